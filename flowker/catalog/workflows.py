"""Workflow domain operations, used by the REST API and by ``flowker apply``.

Every state change and its audit entry commit in one ``write_transaction()``: no change
without its entry, no entry without its change. Every saved spec is also a
:class:`WorkflowVersion` (executions run against the version they started with); saving
an unchanged spec creates no version and no audit entry.

Lifecycle: ``draft -(activate)-> active -(deactivate)-> inactive -(draft)-> draft``. Only
drafts are edited; active workflows are not deleted. Status changes are compare-and-set
on the previous status (409 FLK-0350 when another request won). Activation runs every
check ``flowker validate`` runs, with executors resolved from the database, and claims
the webhook route in the WebhookRoute table that every process reads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import peewee

from flowker.errors import Conflict, NotFound, SpecError, UnprocessableEntity
from flowker.validation.documents import WORKFLOW, SpecDocument, make_document
from flowker.validation.problems import Problem
from flowker.storage.database import write_transaction
from flowker.storage.models import WebhookRoute, Workflow, WorkflowVersion, utcnow
from flowker.catalog.executors import (
    audit,
    canonical_hash,
    checked_problems,
    decrypt_secrets,
    refuse_secret_references,
    encrypt_secrets,
    executor_reference_map,
    mask_secrets,
    restore_masked_secrets,
    same_spec,
)
from flowker.error_codes import ErrorCode


DRAFT, ACTIVE, INACTIVE = "draft", "active", "inactive"
STATUSES = (DRAFT, ACTIVE, INACTIVE)
# Secret fields of a workflow spec: the webhook trigger's verify token and signing secret.
SECRET_PATHS = (("nodes", "*", "data", "verify_token"), ("nodes", "*", "data", "auth", "secret"))
RESOURCE_TYPE = "workflow"


def normalise_webhook_path(path: str) -> str:
    """``payments/`` and ``/payments`` are the same route: one leading slash, none trailing."""
    path = "/" + path.strip("/")
    return path


def webhook_triggers(spec: dict) -> list[tuple[str, str]]:
    """(METHOD, normalised path) of every webhook trigger in a spec."""
    routes = []
    for node in spec.get("nodes") or []:
        data = node.get("data") if isinstance(node, dict) else None
        if node.get("type") == "trigger" and isinstance(data, dict) and data.get("triggerType") == "webhook":
            routes.append((str(data.get("method", "POST")).upper(), normalise_webhook_path(str(data.get("path", "")))))
    return routes


def executor_references(spec: dict) -> set[str]:
    return {
        node["data"]["executor"]
        for node in spec.get("nodes") or []
        if isinstance(node, dict)
        and node.get("type") == "executor"
        and isinstance(node.get("data"), dict)
        and isinstance(node["data"].get("executor"), str)
    }


@dataclass(frozen=True)
class SaveResult:
    workflow: Workflow
    changed: bool


class WorkflowStore:
    """Workflow operations. ``actor`` is an :class:`flowker.audit.chain.Actor`."""

    def __init__(self, registry, secret_box=None, secret_policy=None, audit_log=None):
        from flowker.security.secret_policy import SecretReferencePolicy

        self.registry = registry
        self.audit_log = audit_log  # the runtime's AuditLog; every change is appended with it
        self.secret_box = secret_box
        # Where a webhook's verify_token reference may point; without settings, development's defaults.
        self.secret_policy = secret_policy or SecretReferencePolicy()

    # -- reading ---------------------------------------------------------------------

    def get(self, workflow_id: str) -> Workflow:
        workflow = Workflow.get_or_none(Workflow.id == workflow_id)
        if workflow is None:
            raise NotFound(f"workflow {workflow_id} not found", code=ErrorCode.WORKFLOW_NOT_FOUND)
        return workflow

    def get_by_name(self, name: str) -> Workflow | None:
        return Workflow.get_or_none(Workflow.name == name)

    def query(self, status: str | None = None) -> peewee.ModelSelect[Workflow]:
        query = Workflow.select()
        if status:
            query = query.where(Workflow.status == status)
        return query

    def public_spec(self, workflow: Workflow) -> dict:
        """The stored spec with secrets masked, for responses."""
        return mask_secrets(workflow.spec, SECRET_PATHS, self.secret_box)

    def versions(self, workflow_id: str) -> peewee.ModelSelect[WorkflowVersion]:
        """Every saved version of the workflow (the caller sorts and pages)."""
        return WorkflowVersion.select().where(WorkflowVersion.workflow_id == workflow_id)

    def get_version(self, workflow_id: str, version: int) -> WorkflowVersion:
        row = WorkflowVersion.get_or_none(
            (WorkflowVersion.workflow_id == workflow_id) & (WorkflowVersion.version == version)
        )
        if row is None:
            raise NotFound(
                f"workflow {workflow_id} has no version {version}", code=ErrorCode.WORKFLOW_VERSION_NOT_FOUND
            )
        return row

    def public_version_spec(self, row: WorkflowVersion) -> dict:
        """A saved version's spec with secrets masked, as :meth:`public_spec` masks the current one."""
        return mask_secrets(row.spec, SECRET_PATHS, self.secret_box)

    def plain_spec(self, workflow: Workflow) -> dict:
        """The spec as it was posted, with literal secrets decrypted (never for responses)."""
        return decrypt_secrets(workflow.spec, SECRET_PATHS, self.secret_box)

    def is_unchanged(self, workflow: Workflow, spec: dict | SpecDocument) -> bool:
        """Whether saving ``spec`` would change nothing (``flowker apply``'s plan)."""
        body = restore_masked_secrets(self._document(spec).body, self.plain_spec(workflow), SECRET_PATHS)
        return same_spec(workflow.spec, body, SECRET_PATHS, self.secret_box)

    # -- writing ---------------------------------------------------------------------

    def create(self, spec: dict | SpecDocument, actor) -> Workflow:
        document = self._checked(spec)
        body = document.body
        if self.get_by_name(body["name"]) is not None:
            raise self._duplicate(body["name"])
        stored = encrypt_secrets(body, SECRET_PATHS, self.secret_box)
        now = utcnow()
        try:
            with write_transaction():
                workflow = Workflow.create(
                    name=body["name"],
                    description=body.get("description"),
                    status=DRAFT,
                    version=1,
                    spec=stored,
                    spec_hash=canonical_hash(stored),
                    created_at=now,
                    updated_at=now,
                )
                WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=stored, created_at=now)
                self._audit(
                    "WORKFLOW_CREATED", "CREATE", workflow, actor, {"workflow.name": workflow.name, "version": 1}
                )
        except peewee.IntegrityError:
            raise self._duplicate(body["name"]) from None
        return workflow

    def update(self, workflow_id: str, spec: dict | SpecDocument, actor) -> SaveResult:
        """Replace a draft's spec. An unchanged spec is a no-op (no version, no audit entry)."""
        workflow = self.get(workflow_id)
        if workflow.status != DRAFT:
            raise UnprocessableEntity(
                f"workflow {workflow.id} is {workflow.status}: only drafts are edited "
                "(deactivate it, then POST .../draft)",
                code=ErrorCode.WORKFLOW_NOT_DRAFT,
            )
        document = self._checked(spec)
        body = restore_masked_secrets(document.body, self.plain_spec(workflow), SECRET_PATHS)
        if same_spec(workflow.spec, body, SECRET_PATHS, self.secret_box):
            return SaveResult(workflow, changed=False)
        if body["name"] != workflow.name:
            other = self.get_by_name(body["name"])
            if other is not None and other.id != workflow.id:
                raise self._duplicate(body["name"])
        stored = encrypt_secrets(body, SECRET_PATHS, self.secret_box)
        now = utcnow()
        version = workflow.version + 1
        try:
            with write_transaction():
                updated = (
                    Workflow.update(
                        name=body["name"],
                        description=body.get("description"),
                        spec=stored,
                        spec_hash=canonical_hash(stored),
                        version=version,
                        updated_at=now,
                    )
                    .where(
                        (Workflow.id == workflow.id)
                        & (Workflow.status == DRAFT)
                        & (Workflow.version == workflow.version)
                    )
                    .execute()
                )
                if updated != 1:
                    raise self._concurrent(workflow.id)
                WorkflowVersion.create(workflow_id=workflow.id, version=version, spec=stored, created_at=now)
                workflow = Workflow.get_by_id(workflow.id)
                self._audit(
                    "WORKFLOW_UPDATED", "UPDATE", workflow, actor, {"workflow.name": workflow.name, "version": version}
                )
        except peewee.IntegrityError:
            raise self._duplicate(body["name"]) from None
        return SaveResult(workflow, changed=True)

    def delete(self, workflow_id: str, actor) -> None:
        workflow = self.get(workflow_id)
        if workflow.status == ACTIVE:
            raise UnprocessableEntity(
                f"workflow {workflow.id} is active and cannot be deleted: deactivate it first",
                code=ErrorCode.WORKFLOW_NOT_DRAFT,
            )
        with write_transaction():
            deleted = (
                Workflow.delete().where((Workflow.id == workflow.id) & (Workflow.status == workflow.status)).execute()
            )
            if deleted != 1:
                raise self._concurrent(workflow.id)
            WebhookRoute.delete().where(WebhookRoute.workflow_id == workflow.id).execute()
            self._audit(
                "WORKFLOW_DELETED",
                "DELETE",
                workflow,
                actor,
                {"workflow.id": workflow.id, "workflow.name": workflow.name},
            )

    def activate(self, workflow_id: str, actor) -> Workflow:
        workflow = self.get(workflow_id)
        self._require(workflow, DRAFT, "activate")
        self._check_for_activation(workflow)
        routes = webhook_triggers(workflow.spec)
        try:
            with write_transaction():
                for method, path in routes:
                    owner = WebhookRoute.get_or_none((WebhookRoute.method == method) & (WebhookRoute.path == path))
                    if owner is not None and owner.workflow_id != workflow.id:
                        raise self._route_taken(method, path, owner.workflow_id)
                    if owner is None:
                        WebhookRoute.create(method=method, path=path, workflow_id=workflow.id)
                workflow = self._transition(workflow, DRAFT, ACTIVE)
                self._audit(
                    "WORKFLOW_ACTIVATED",
                    "ACTIVATE",
                    workflow,
                    actor,
                    {"workflow.name": workflow.name, "version": workflow.version},
                )
        except peewee.IntegrityError:
            # Another process claimed a route between our check and our insert.
            method, path = routes[0] if routes else ("", "")
            raise self._route_taken(method, path, None) from None
        return workflow

    def deactivate(self, workflow_id: str, actor) -> Workflow:
        workflow = self.get(workflow_id)
        self._require(workflow, ACTIVE, "deactivate")
        with write_transaction():
            WebhookRoute.delete().where(WebhookRoute.workflow_id == workflow.id).execute()
            workflow = self._transition(workflow, ACTIVE, INACTIVE)
            self._audit("WORKFLOW_DEACTIVATED", "DEACTIVATE", workflow, actor, {"workflow.name": workflow.name})
        return workflow

    def to_draft(self, workflow_id: str, actor) -> Workflow:
        workflow = self.get(workflow_id)
        self._require(workflow, INACTIVE, "move to draft")
        with write_transaction():
            WebhookRoute.delete().where(WebhookRoute.workflow_id == workflow.id).execute()
            workflow = self._transition(workflow, INACTIVE, DRAFT)
            self._audit("WORKFLOW_DRAFTED", "DRAFT", workflow, actor, {"workflow.name": workflow.name})
        return workflow

    def clone(self, workflow_id: str, name: Any, actor) -> Workflow:
        """A new draft copying the source's description, nodes, edges and metadata."""
        source = self.get(workflow_id)
        body = copy.deepcopy(self.plain_spec(source))
        body["name"] = name
        document = self._checked(body)
        if self.get_by_name(document.body["name"]) is not None:
            raise self._duplicate(document.body["name"])
        stored = encrypt_secrets(document.body, SECRET_PATHS, self.secret_box)
        now = utcnow()
        try:
            with write_transaction():
                workflow = Workflow.create(
                    name=document.body["name"],
                    description=document.body.get("description"),
                    status=DRAFT,
                    version=1,
                    spec=stored,
                    spec_hash=canonical_hash(stored),
                    created_at=now,
                    updated_at=now,
                )
                WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=stored, created_at=now)
                self._audit(
                    "WORKFLOW_CLONED",
                    "CLONE",
                    workflow,
                    actor,
                    {"workflow.name": workflow.name, "version": 1, "clonedFrom": source.id},
                )
        except peewee.IntegrityError:
            raise self._duplicate(document.body["name"]) from None
        return workflow

    # -- helpers ---------------------------------------------------------------------

    def _checked(self, spec: dict | SpecDocument) -> SpecDocument:
        """Every check but executor resolution (that waits for activation)."""
        document = self._document(spec)
        problems = checked_problems(document, self.registry)
        if problems:
            raise SpecError(problems)
        refuse_secret_references(document, self.secret_policy)
        return document

    @staticmethod
    def _document(spec: dict | SpecDocument) -> SpecDocument:
        if isinstance(spec, SpecDocument):
            if spec.kind != WORKFLOW:
                raise SpecError(
                    [Problem(spec.source, 1, 1, ("kind",), f"kind is {spec.kind!r} but this takes 'Workflow'")]
                )
            return spec
        if not isinstance(spec, dict):
            raise SpecError([Problem("<request>", None, None, (), "the body must be a JSON object")])
        if "kind" in spec and spec["kind"] != WORKFLOW:
            raise SpecError([Problem("<request>", None, None, ("kind",), "kind must be 'Workflow' here")])
        return make_document(WORKFLOW, spec, "<request>", from_file=False)

    def _check_for_activation(self, workflow: Workflow) -> None:
        spec = self.plain_spec(workflow)
        references = executor_reference_map(executor_references(spec))
        document = make_document(WORKFLOW, spec, f"workflow {workflow.name}", from_file=False)
        problems = checked_problems(document, self.registry, references.bodies)
        for index, node in enumerate(spec.get("nodes") or []):
            data = node.get("data") if isinstance(node, dict) else None
            if node.get("type") != "executor" or not isinstance(data, dict):
                continue
            status = references.statuses.get(data.get("executor"))
            if status is not None and status != "active":
                problems.append(
                    Problem(
                        document.source,
                        None,
                        None,
                        ("nodes", index, "data", "executor"),
                        f"executor {data.get('executor')!r} is {status}: enable it first",
                    )
                )
        if problems:
            raise SpecError(
                problems, message="workflow cannot be activated: " + "; ".join(p.format() for p in problems[:20])
            )

    def _transition(self, workflow: Workflow, expected: str, new: str) -> Workflow:
        now = utcnow()
        changed = (
            Workflow.update(status=new, updated_at=now)
            .where((Workflow.id == workflow.id) & (Workflow.status == expected))
            .execute()
        )
        if changed != 1:
            raise self._concurrent(workflow.id)
        return Workflow.get_by_id(workflow.id)

    @staticmethod
    def _require(workflow: Workflow, expected: str, verb: str) -> None:
        if workflow.status != expected:
            raise UnprocessableEntity(
                f"cannot {verb} workflow {workflow.id}: it is {workflow.status} and must be {expected} "
                "(draft -> active -> inactive -> draft)",
                code=ErrorCode.WORKFLOW_TRANSITION_REFUSED,
            )

    @staticmethod
    def _duplicate(name: str) -> Conflict:
        return Conflict(f"a workflow named {name!r} already exists", code=ErrorCode.WORKFLOW_NAME_TAKEN)

    @staticmethod
    def _concurrent(workflow_id: str) -> Conflict:
        return Conflict(
            f"workflow {workflow_id} was changed by another request: read it again and retry",
            code=ErrorCode.CONCURRENT_CHANGE,
        )

    @staticmethod
    def _route_taken(method: str, path: str, owner: str | None) -> Conflict:
        whose = f" by workflow {owner}" if owner else " by another workflow"
        return Conflict(f"webhook route {method} {path} is already taken{whose}", code=ErrorCode.WEBHOOK_ROUTE_TAKEN)

    def _audit(self, event_type: str, action: str, workflow: Workflow, actor, metadata: dict) -> None:
        audit(event_type, action, RESOURCE_TYPE, workflow.id, actor, metadata, audit_log=self.audit_log)
