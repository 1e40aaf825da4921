"""Executor domain operations (REST API and ``flowker apply``), plus the helpers both
stores share: literal secrets encrypted at rest and masked on the way out, spec
comparison for "unchanged", and the audit append that joins the caller's transaction.

Every change and its audit entry commit in one ``write_transaction()``. The base URL is
checked by the SSRF guard's shape check at config time (no DNS; the call-time check
resolves and pins). An executor used by an active workflow is not deleted.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

import peewee
import rfc8785

from flowker.errors import Conflict, NotFound, SpecError, UnprocessableEntity
from flowker.validation.documents import EXECUTOR, SpecDocument, make_document
from flowker.validation.problems import Problem
from flowker.storage.database import write_transaction
from flowker.storage.models import Executor, Workflow, utcnow
from flowker.error_codes import ErrorCode


ACTIVE, DISABLED = "active", "disabled"
STATUSES = (ACTIVE, DISABLED)
RESOURCE_TYPE = "executor"
_ENCRYPTED = "$encrypted"


# --------------------------------------------------------------------------- shared helpers


def audit(
    event_type: str,
    action: str,
    resource_type: str,
    resource_id: str,
    actor,
    metadata: dict,
    result: str = "SUCCESS",
    context: dict | None = None,
    audit_log=None,
) -> None:
    """Append an audit entry inside the caller's transaction (it fails -> the change rolls back),
    with ``audit_log`` (the runtime's; None: a plain log of the bound database)."""
    from flowker.audit import chain

    chain.append(
        event_type=event_type,
        action=action,
        result=result,
        resource_type=resource_type,
        resource_id=resource_id,
        actor=actor,
        context=context or {},
        metadata=metadata,
        audit_log=audit_log,
    )


def _paths_in(value: Any, path: tuple, prefix: tuple = ()) -> Iterable[tuple[tuple, Any]]:
    """Every (concrete path, value) matching ``path`` ("*" matches any key or index)."""
    if not path:
        yield prefix, value
        return
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else ([head] if head in value else [])
        for key in keys:
            yield from _paths_in(value[key], rest, prefix + (key,))
    elif isinstance(value, list):
        indexes = range(len(value)) if head == "*" else ([head] if isinstance(head, int) and head < len(value) else [])
        for index in indexes:
            yield from _paths_in(value[index], rest, prefix + (index,))


def _lookup(value: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def _assign(value: Any, path: tuple, new: Any) -> None:
    for part in path[:-1]:
        value = value[part]
    value[path[-1]] = new


def _without_tokens(value: Any) -> Any:
    """The spec with encrypted tokens replaced by a constant (tokens are randomised)."""
    if isinstance(value, dict):
        if len(value) == 1 and _ENCRYPTED in value:
            return {_ENCRYPTED: "*"}
        return {k: _without_tokens(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_tokens(v) for v in value]
    return value


def canonical_hash(stored_spec: dict) -> str:
    """sha256 of the RFC 8785 form of a stored spec; encrypted secrets do not take part."""
    return hashlib.sha256(rfc8785.dumps(_without_tokens(stored_spec))).hexdigest()


def encrypt_secrets(body: dict, paths: Iterable[tuple], box) -> dict:
    """A copy with literal secrets at ``paths`` replaced by ``{"$encrypted": token}``."""
    paths = list(paths)
    literal = [p for path in paths for p, v in _paths_in(body, path) if isinstance(v, str)]
    if not literal:
        return copy.deepcopy(body)
    if box is None:
        raise UnprocessableEntity(
            "literal secrets cannot be stored: no FLOWKER_SECRET_KEY is configured; "
            "use {$env: NAME} or {$file: PATH} references instead",
            code=ErrorCode.LITERAL_SECRET_WITHOUT_KEY,
        )
    return box.encrypt_fields(body, paths)


def decrypt_secrets(stored: dict, paths: Iterable[tuple], box) -> dict:
    """The spec with literal secrets decrypted (never for responses)."""
    if box is None:
        return copy.deepcopy(stored)
    return box.decrypt_fields(stored, list(paths))


def mask_secrets(stored: dict, paths: Iterable[tuple], box) -> dict:
    from flowker.security.secrets import mask_fields

    return mask_fields(stored, list(paths), box)


def restore_masked_secrets(body: dict, old_plain: dict, paths: Iterable[tuple]) -> dict:
    """A body sent back as read (``"****abcd"`` where the secret was) keeps the stored secret."""
    from flowker.security.redaction import MASK, mask_value

    result = copy.deepcopy(body)
    for path in paths:
        for concrete, value in list(_paths_in(result, path)):
            if not (isinstance(value, str) and value.startswith(MASK)):
                continue
            old = _lookup(old_plain, concrete)
            if isinstance(old, str) and mask_value(old, show_last=True) == value:
                _assign(result, concrete, old)
    return result


def same_spec(stored: dict, plain_body: dict, paths: Iterable[tuple], box) -> bool:
    """Whether a stored spec holds exactly ``plain_body`` (secrets compared decrypted)."""
    try:
        current = decrypt_secrets(stored, paths, box)
    except Exception:  # noqa: BLE001 - an undecryptable secret counts as changed
        return False
    return rfc8785.dumps(current) == rfc8785.dumps(plain_body)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def checked_problems(document: SpecDocument, registry, executors=None) -> list:
    """Every problem of a document (``flowker validate``'s checks).

    The semantic checks assume a body that passed the schema; should one of them fail
    on a malformed body, the schema problems are the answer (422), not a 500.
    """
    from flowker.validation.checks import check_document
    from flowker.validation.problems import ProblemList
    from flowker.validation.schemas import check_schema

    try:
        return check_document(document, registry, executors)
    except Exception:
        logging.getLogger(__name__).warning(
            "spec checks failed on %s; answering with its schema problems", document.source, exc_info=True
        )
        schema_only = ProblemList(document.source, document.locations)
        check_schema(document.kind, document.body, schema_only)
        if schema_only.problems:
            return schema_only.problems
        raise


def refuse_secret_references(document: SpecDocument, policy) -> None:
    """422 FLK-0007 naming each field whose ``$file``/``$env`` reference the policy refuses
    (a :class:`SecretReferencePolicy`; DESIGN §6). The path, never a value."""
    from flowker.errors import SecretReferenceSpecError
    from flowker.validation.problems import ProblemList
    from flowker.validation.secret_reference_checks import check_secret_references

    problems = ProblemList(document.source, document.locations)
    check_secret_references(document.kind, document.body, policy, problems)
    if problems.problems:
        messages = []
        for problem in problems.problems:
            field_path = ".".join(f"[{p}]" if isinstance(p, int) else p for p in problem.path[:-1]).replace(".[", "[")
            location = f"{problem.source}:{problem.line}:{problem.column}: " if problem.line is not None else ""
            messages.append(f"{location}{field_path}: {problem.message}")
        raise SecretReferenceSpecError(problems.problems, message="; ".join(messages))


@dataclass(frozen=True)
class ExecutorReferences:
    """Executors that workflow nodes name, keyed by name and by id."""

    bodies: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)


def executor_reference_map(references: Iterable[str]) -> ExecutorReferences:
    references = sorted(set(references))
    if not references:
        return ExecutorReferences()
    bodies, statuses = {}, {}
    for executor in Executor.select().where(Executor.name.in_(references) | Executor.id.in_(references)):
        for key in (executor.name, executor.id):
            bodies[key] = executor.spec
            statuses[key] = executor.status
    return ExecutorReferences(bodies, statuses)


@dataclass(frozen=True)
class SaveResult:
    executor: Executor
    changed: bool


# --------------------------------------------------------------------------- the store


class ExecutorStore:
    def __init__(self, registry, secret_box=None, address_policy=None, secret_policy=None, audit_log=None):
        from flowker.security.secret_policy import SecretReferencePolicy

        self.registry = registry
        self.audit_log = audit_log  # the runtime's AuditLog; every change is appended with it
        self.secret_box = secret_box
        self.address_policy = address_policy
        # Where $file/$env references may point; without settings, development's defaults.
        self.secret_policy = secret_policy or SecretReferencePolicy()

    # -- reading ---------------------------------------------------------------------

    def get(self, executor_id: str) -> Executor:
        executor = Executor.get_or_none(Executor.id == executor_id)
        if executor is None:
            raise NotFound(f"executor {executor_id} not found", code=ErrorCode.EXECUTOR_NOT_FOUND)
        return executor

    def get_by_name(self, name: str) -> Executor | None:
        return Executor.get_or_none(Executor.name == name)

    def query(self, status: str | None = None) -> peewee.ModelSelect[Executor]:
        query = Executor.select()
        if status:
            query = query.where(Executor.status == status)
        return query

    def secret_paths(self, *specs: dict) -> list[tuple]:
        """Secret config fields of the auth types the specs use (``writeOnly`` in their schemas)."""
        paths = set()
        for spec in specs:
            authentication = spec.get("authentication") if isinstance(spec, dict) else None
            type_name = authentication.get("type") if isinstance(authentication, dict) else None
            auth_type = self.registry.auth_types.get(type_name) if self.registry is not None and type_name else None
            for name in getattr(auth_type, "secret_fields", ()):
                paths.add(("authentication", "config", name))
        return sorted(paths)

    def public_spec(self, executor: Executor) -> dict:
        """The stored spec for responses: secret fields masked, other secret-looking keys too."""
        from flowker.security.redaction import redact

        spec = mask_secrets(executor.spec, self.secret_paths(executor.spec), self.secret_box)
        authentication = spec.get("authentication")
        if isinstance(authentication, dict) and isinstance(authentication.get("config"), dict):
            masked = set(name for _, _, name in self.secret_paths(executor.spec))
            config = authentication["config"]
            authentication["config"] = {
                key: value if key in masked else redact({key: value}, show_last=True)[key]
                for key, value in config.items()
            }
        return spec

    def plain_spec(self, executor: Executor) -> dict:
        return decrypt_secrets(executor.spec, self.secret_paths(executor.spec), self.secret_box)

    def is_unchanged(self, executor: Executor, spec: dict | SpecDocument) -> bool:
        """Whether saving ``spec`` (PUT) would change nothing (``flowker apply``'s plan)."""
        body = self._document(spec).body
        body = restore_masked_secrets(body, self.plain_spec(executor), self.secret_paths(body))
        return same_spec(executor.spec, body, self.secret_paths(body), self.secret_box)

    # -- writing ---------------------------------------------------------------------

    def create(self, spec: dict | SpecDocument, actor) -> Executor:
        body = self._checked(spec).body
        if self.get_by_name(body["name"]) is not None:
            raise self._duplicate(body["name"])
        stored = encrypt_secrets(body, self.secret_paths(body), self.secret_box)
        now = utcnow()
        try:
            with write_transaction():
                executor = Executor.create(
                    name=body["name"],
                    description=body.get("description"),
                    base_url=body["baseUrl"],
                    status=ACTIVE,
                    version=1,
                    spec=stored,
                    spec_hash=canonical_hash(stored),
                    created_at=now,
                    updated_at=now,
                )
                self._audit("EXECUTOR_CREATED", "CREATE", executor, actor, {"executor.name": executor.name})
        except peewee.IntegrityError:
            raise self._duplicate(body["name"]) from None
        return executor

    def update(self, executor_id: str, spec: dict | SpecDocument, actor) -> SaveResult:
        """Replace the whole spec (PUT). An unchanged spec changes nothing and is not audited."""
        executor = self.get(executor_id)
        return self._save(executor, self._checked(spec).body, actor)

    def patch(self, executor_id: str, patch: dict, actor) -> SaveResult:
        """JSON Merge Patch (RFC 7386) onto the current spec, then the same checks as PUT."""
        executor = self.get(executor_id)
        if not isinstance(patch, dict):
            raise SpecError([Problem("<request>", None, None, (), "the body must be a JSON object")])
        if "kind" in patch and patch["kind"] != EXECUTOR:
            raise SpecError([Problem("<request>", None, None, ("kind",), "kind must be 'Executor' here")])
        patch = {key: value for key, value in patch.items() if key != "kind"}
        old_plain = self.plain_spec(executor)
        merged = merge_patch(old_plain, patch)
        return self._save(executor, self._checked(merged).body, actor)

    def delete(self, executor_id: str, actor) -> None:
        executor = self.get(executor_id)
        users = self.active_workflows_using(executor)
        if users:
            raise Conflict(
                f"executor {executor.name!r} is used by active workflow(s) {', '.join(sorted(users))}: "
                "deactivate them first",
                code=ErrorCode.EXECUTOR_IN_USE,
            )
        with write_transaction():
            deleted = (
                Executor.delete().where((Executor.id == executor.id) & (Executor.version == executor.version)).execute()
            )
            if deleted != 1:
                raise self._concurrent(executor.id)
            self._audit(
                "EXECUTOR_DELETED",
                "DELETE",
                executor,
                actor,
                {"executor.id": executor.id, "executor.name": executor.name},
            )

    def enable(self, executor_id: str, actor) -> Executor:
        return self._set_status(executor_id, DISABLED, ACTIVE, "EXECUTOR_ENABLED", "ENABLE", actor)

    def disable(self, executor_id: str, actor) -> Executor:
        return self._set_status(executor_id, ACTIVE, DISABLED, "EXECUTOR_DISABLED", "DISABLE", actor)

    def mark_tested(self, executor_id: str, actor, overall_status: str) -> Executor:
        executor = self.get(executor_id)
        with write_transaction():
            Executor.update(last_tested_at=utcnow()).where(Executor.id == executor.id).execute()
            self._audit(
                "EXECUTOR_TESTED",
                "TEST",
                executor,
                actor,
                {"executor.name": executor.name, "overallStatus": overall_status},
                result="SUCCESS" if overall_status == "passed" else "FAILED",
            )
        return Executor.get_by_id(executor.id)

    def active_workflows_using(self, executor: Executor) -> list[str]:
        from flowker.catalog.workflows import executor_references

        names = []
        for workflow in Workflow.select().where(Workflow.status == "active"):
            if {executor.name, executor.id} & executor_references(workflow.spec):
                names.append(workflow.name)
        return names

    # -- helpers ---------------------------------------------------------------------

    def _save(self, executor: Executor, body: dict, actor) -> SaveResult:
        old_plain = self.plain_spec(executor)
        body = restore_masked_secrets(body, old_plain, self.secret_paths(body))
        paths = self.secret_paths(body)
        if executor.spec == body or same_spec(executor.spec, body, paths, self.secret_box):
            return SaveResult(executor, changed=False)
        if body["name"] != executor.name:
            other = self.get_by_name(body["name"])
            if other is not None and other.id != executor.id:
                raise self._duplicate(body["name"])
            users = self.active_workflows_using(executor)
            if users:
                raise Conflict(
                    f"executor {executor.name!r} cannot be renamed: active workflow(s) "
                    f"{', '.join(sorted(users))} use it by name",
                    code=ErrorCode.EXECUTOR_IN_USE,
                )
        stored = encrypt_secrets(body, paths, self.secret_box)
        try:
            with write_transaction():
                updated = (
                    Executor.update(
                        name=body["name"],
                        description=body.get("description"),
                        base_url=body["baseUrl"],
                        spec=stored,
                        spec_hash=canonical_hash(stored),
                        version=executor.version + 1,
                        updated_at=utcnow(),
                    )
                    .where((Executor.id == executor.id) & (Executor.version == executor.version))
                    .execute()
                )
                if updated != 1:
                    raise self._concurrent(executor.id)
                executor = Executor.get_by_id(executor.id)
                self._audit(
                    "EXECUTOR_UPDATED",
                    "UPDATE",
                    executor,
                    actor,
                    {"executor.name": executor.name, "version": executor.version},
                )
        except peewee.IntegrityError:
            raise self._duplicate(body["name"]) from None
        return SaveResult(executor, changed=True)

    def _set_status(self, executor_id: str, expected: str, new: str, event_type: str, action: str, actor) -> Executor:
        executor = self.get(executor_id)
        if executor.status != expected:
            raise UnprocessableEntity(
                f"executor {executor.id} is already {executor.status}", code=ErrorCode.EXECUTOR_TRANSITION_REFUSED
            )
        with write_transaction():
            changed = (
                Executor.update(status=new, updated_at=utcnow())
                .where((Executor.id == executor.id) & (Executor.status == expected))
                .execute()
            )
            if changed != 1:
                raise self._concurrent(executor.id)
            executor = Executor.get_by_id(executor.id)
            self._audit(event_type, action, executor, actor, {"executor.name": executor.name})
        return executor

    def _checked(self, spec: dict | SpecDocument) -> SpecDocument:
        document = self._document(spec)
        problems = checked_problems(document, self.registry)
        if problems:
            raise SpecError(problems)
        refuse_secret_references(document, self.secret_policy)
        if self.address_policy is not None:
            # Config time: scheme, https in production, literal and loopback/metadata
            # addresses. SSRFBlockedError (422 FLK-0341) names the host only.
            self.address_policy.check_url_shape(document.body["baseUrl"])
            self._check_auth_urls(document.body)
        return document

    def _check_auth_urls(self, body: dict) -> None:
        """URLs in the auth config (the fields its type declares in ``url_fields``) pass the
        same config-time check as the base URL; token endpoints are checked again at call time."""
        from flowker.errors import SSRFBlockedError

        authentication = body.get("authentication")
        if not isinstance(authentication, dict) or not isinstance(authentication.get("config"), dict):
            return
        config = authentication["config"]
        auth_type = self.registry.auth_types.get(authentication.get("type")) if self.registry is not None else None
        if auth_type is None:
            return
        for key, value in sorted(config.items()):
            if key in auth_type.url_fields and isinstance(value, str):
                try:
                    self.address_policy.check_url_shape(value)
                except SSRFBlockedError as exc:
                    raise SSRFBlockedError(f"authentication.config.{key}: {exc.message}") from None

    @staticmethod
    def _document(spec: dict | SpecDocument) -> SpecDocument:
        if isinstance(spec, SpecDocument):
            if spec.kind != EXECUTOR:
                raise SpecError(
                    [Problem(spec.source, 1, 1, ("kind",), f"kind is {spec.kind!r} but this takes 'Executor'")]
                )
            return spec
        if not isinstance(spec, dict):
            raise SpecError([Problem("<request>", None, None, (), "the body must be a JSON object")])
        if "kind" in spec and spec["kind"] != EXECUTOR:
            raise SpecError([Problem("<request>", None, None, ("kind",), "kind must be 'Executor' here")])
        return make_document(EXECUTOR, spec, "<request>", from_file=False)

    @staticmethod
    def _duplicate(name: str) -> Conflict:
        return Conflict(f"an executor named {name!r} already exists", code=ErrorCode.EXECUTOR_NAME_TAKEN)

    @staticmethod
    def _concurrent(executor_id: str) -> Conflict:
        return Conflict(
            f"executor {executor_id} was changed by another request: read it again and retry",
            code=ErrorCode.CONCURRENT_CHANGE,
        )

    def _audit(
        self, event_type: str, action: str, executor: Executor, actor, metadata: dict, result: str = "SUCCESS"
    ) -> None:
        audit(event_type, action, RESOURCE_TYPE, executor.id, actor, metadata, result=result, audit_log=self.audit_log)
