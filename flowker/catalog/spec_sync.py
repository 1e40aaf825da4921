"""Spec sync: a set of spec documents planned and applied through the catalog services.

Every document is validated first (workflows resolve executors among the set's and the
target's); then the plan, executors before workflows, one change per resource:
``create``, ``update`` or ``unchanged``, with the lifecycle steps it takes. Nothing
changes when a spec is invalid or an update would be refused (a changed active workflow
without ``activate``). Each step runs through the same domain operations as the REST
API, so each is audited, and an unchanged spec changes nothing at all.

Callers: ``flowker apply`` (:func:`sync` with a local or a remote target),
``flowker serve --specs`` (:func:`apply_local`), ``flowker run`` (:func:`install_for_run`).
A target is :class:`LocalTarget` (the database) or anything with the same
``reference_executors``/``current``/``perform`` (``flowker.cli.apply.RemoteTarget``).
Messages go to ``echo(text, err=False)`` (``click.echo`` from the CLI); by default nowhere.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from flowker.errors import FlowkerError

if TYPE_CHECKING:
    from flowker.validation.documents import SpecDocument
    from flowker.storage.models import Executor, Workflow

Echo = Callable[..., None]


def _quiet(message: str, err: bool = False) -> None:
    """The default ``echo``: say nothing."""


CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
# The PostgreSQL advisory lock that serializes local spec syncs (``flowker apply``, ``serve --specs``).
SPEC_SYNC_LOCK_ID = 0x466C6F776B6573  # "Flowkes"


@dataclass(frozen=True)
class Current:
    """A resource as the target holds it."""

    id: str
    status: str
    unchanged: bool


@dataclass
class Change:
    """What apply does to one resource: ``steps`` in order (empty when nothing)."""

    document: SpecDocument
    action: str
    current: Current | None
    steps: list = field(default_factory=list)
    refusal: str | None = None

    @property
    def kind(self) -> str:
        return self.document.kind.lower()

    def describe(self) -> str:
        line = f"  {self.kind:<9} {self.document.name:<32} {self.action:<10}"
        if self.refusal:
            return f"{line} REFUSED: {self.refusal}"
        status = f"{self.current.status}: " if self.current is not None and self.kind == "workflow" else ""
        if self.steps and self.steps != [self.action]:
            line += f" {status}{' -> '.join(self.steps)}"
        return line.rstrip()


def plan_changes(documents, backend, *, activate: bool, enable_executors: bool = False) -> list[Change]:
    """The changes, executors first, each kind in file order. ``enable_executors``: a disabled
    executor is enabled too (``flowker run``)."""
    changes = []
    for kind in ("Executor", "Workflow"):
        for document in documents:
            if document.kind != kind:
                continue
            current = backend.current(document)
            changes.append(
                _executor_change(document, current, enable_executors)
                if kind == "Executor"
                else _workflow_change(document, current, activate)
            )
    return changes


def _executor_change(document, current: Current | None, enable: bool = False) -> Change:
    then_enable = ["enable"] if enable and current is not None and current.status != "active" else []
    if current is None:
        return Change(document, CREATE, None, ["create"])
    if current.unchanged:
        return Change(document, UNCHANGED, current, then_enable)
    return Change(document, UPDATE, current, ["update", *then_enable])


def _workflow_change(document, current: Current | None, activate: bool) -> Change:
    then_activate = ["activate"] if activate else []
    if current is None:
        return Change(document, CREATE, None, ["create", *then_activate])
    status = current.status
    if current.unchanged:
        steps = {"active": [], "draft": then_activate, "inactive": ["draft", *then_activate] if activate else []}
        return Change(document, UNCHANGED, current, steps.get(status, []))
    if status == "draft":
        return Change(document, UPDATE, current, ["update", *then_activate])
    if status == "inactive":
        return Change(document, UPDATE, current, ["draft", "update", *then_activate])
    if activate:
        return Change(document, UPDATE, current, ["deactivate", "draft", "update", "activate"])
    return Change(
        document,
        UPDATE,
        current,
        refusal="the workflow is active and changed; --activate moves it "
        "through deactivate, draft, update and activate",
    )


def run_changes(changes: list[Change], backend, echo: Echo = _quiet) -> bool:
    """Apply every change in order; stop at the first failure (reported). True when all applied."""
    for change in changes:
        if not change.steps:
            continue
        try:
            done = apply_change(change, backend)
        except StepFailed as failed:
            finished = f" after {', '.join(failed.done)}" if failed.done else ""
            echo(
                f"  {change.kind} {change.document.name}: {failed.step} failed{finished}: {failed.cause.message}",
                err=True,
            )
            return False
        echo(f"  {change.kind} {change.document.name}: {', '.join(done)}")
    return True


class StepFailed(Exception):
    """A step of a change failed (``cause``) after the steps ``done`` (in words)."""

    def __init__(self, step: str, done: list[str], cause: FlowkerError):
        super().__init__(cause.message)
        self.step, self.done, self.cause = step, done, cause


def apply_change(change: Change, backend) -> list[str]:
    """Run one change's steps in order; what was done, in words. :class:`StepFailed` at the first failure."""
    resource_id = change.current.id if change.current else None
    done: list[str] = []
    for step in change.steps:
        try:
            result = backend.perform(step, change.document, resource_id)
        except FlowkerError as exc:
            raise StepFailed(step, done, exc) from exc
        resource_id = result.get("id") or resource_id
        version = result.get("version") if step in ("create", "update") else None
        done.append(_past(step) + (f" (version {version})" if version else ""))
    return done


def _past(step: str) -> str:
    return {
        "create": "created",
        "update": "updated",
        "activate": "activated",
        "deactivate": "deactivated",
        "draft": "moved to draft",
        "enable": "enabled",
    }[step]


def summary(changes: list[Change]) -> str:
    counts = {action: sum(1 for c in changes if c.action == action) for action in (CREATE, UPDATE, UNCHANGED)}
    return f"{counts[CREATE]} to create, {counts[UPDATE]} to update, {counts[UNCHANGED]} unchanged"


# --------------------------------------------------------------------------- loading


def load_documents(directory: Path):
    """Every spec under ``directory`` and the problems that stopped any from loading."""
    from flowker.errors import SpecError
    from flowker.validation.loader import find_spec_files, load_spec_file

    documents, problems = [], []
    for path in find_spec_files(directory):
        try:
            documents.append(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)
    return documents, problems


def sync(directory, backend, registry, *, activate: bool, dry_run: bool, target: str, echo: Echo = _quiet) -> bool:
    """Validate, plan, print, apply. True when everything asked for succeeded."""
    from flowker.validation.checks import validate_documents
    from flowker.validation.documents import ExecutorSpec

    directory = Path(directory)
    documents, problems = load_documents(directory)
    if not documents and not problems:
        echo(f"no spec files (*.yaml, *.yml) under {directory}", err=True)
        return False
    names = {d.name for d in documents if isinstance(d, ExecutorSpec)}
    references = [e for e in backend.reference_executors() if e.name not in names]
    # A local target applies this environment's secret reference rules; a server its own.
    problems = problems + validate_documents(
        documents, registry, reference_executors=references, secret_policy=getattr(backend, "secret_policy", None)
    )
    if problems:
        for problem in problems:
            echo(problem.format(), err=True)
        echo(f"{len(problems)} problem(s) in {directory}: nothing applied", err=True)
        return False

    changes = plan_changes(documents, backend, activate=activate)
    echo(f"Plan for {directory} -> {target}:")
    for change in changes:
        echo(change.describe())
    echo(f"Plan: {summary(changes)}.")
    refused = [c for c in changes if c.refusal]
    if refused:
        echo(f"{len(refused)} change(s) refused: nothing applied", err=True)
        return False
    if dry_run:
        echo("Dry run: nothing changed.")
        return True
    if not any(c.steps for c in changes):
        echo("Nothing to do.")
        return True
    echo("Applying:")
    if not run_changes(changes, backend, echo):
        echo("apply stopped at the first failure (the steps above it were applied)", err=True)
        return False
    echo("Applied.")
    return True


# --------------------------------------------------------------------------- the local target


def apply_local(
    settings, registry, directory, *, activate: bool, dry_run: bool = False, runtime=None, echo: Echo = _quiet
) -> bool:
    """Sync into the database of ``settings``. ``runtime``: one whose database is already
    migrated (``flowker serve``); otherwise one is built here, its database migrated unless
    this is a dry run, and closed at the end."""
    from flowker.runtime import Runtime
    from flowker.storage.database import (
        bind_database,
        bound_to,
        close_database,
        database_label,
        exclusive_transaction,
        missing_sqlite_file,
    )
    from flowker.storage.migrations import schema_exists, upgrade

    label = database_label(settings.database_url)
    if dry_run and runtime is None and missing_sqlite_file(settings.database_url):
        # Nothing to read, and a dry run must not create the file: everything is new.
        target = LocalTarget(settings, registry, migrated=False, dry_run=True)
        return sync(directory, target, registry, activate=activate, dry_run=True, target=label, echo=echo)
    if dry_run:
        # Read-only: no runtime (its secret box would create the development key file).
        database = runtime.database if runtime is not None else bind_database(settings.database_url)
        try:
            with bound_to(database), database.connection_context():
                target = LocalTarget(settings, registry, migrated=schema_exists(database), dry_run=True)
                return sync(directory, target, registry, activate=activate, dry_run=True, target=label, echo=echo)
        finally:
            if runtime is None:
                close_database(database)
    own_runtime = runtime is None
    if runtime is None:
        runtime = Runtime.from_settings(settings, registry=registry)
    database = runtime.database
    try:
        if own_runtime:
            upgrade(database)
        with runtime.bound(), database.connection_context():
            # Several servers may start with --specs at once: one sync at a time, each planning
            # only once it holds the lock, so the later ones find everything done.
            with exclusive_transaction(database, SPEC_SYNC_LOCK_ID):
                target = LocalTarget(settings, registry, migrated=schema_exists(database), runtime=runtime)
                return sync(directory, target, registry, activate=activate, dry_run=False, target=label, echo=echo)
    finally:
        if own_runtime:
            runtime.close()


class LocalTarget:
    """The database, through the catalog services the REST API uses: the runtime's, or
    (a dry run, which writes nothing) stores of its own that append nothing."""

    def __init__(self, settings, registry, *, migrated: bool = True, actor=None, dry_run: bool = False, runtime=None):
        from flowker.audit.chain import Actor

        if runtime is not None:
            self.box = runtime.secret_box
            self.secret_policy = runtime.secret_policy
            self.executors = runtime.executors
            self.workflows = runtime.workflows
        else:
            from flowker.catalog.executors import ExecutorStore
            from flowker.catalog.workflows import WorkflowStore
            from flowker.security.secret_policy import SecretReferencePolicy
            from flowker.security.secrets import SecretBox
            from flowker.security.ssrf import AddressPolicy

            # A dry run writes nothing, not even the development secret key file.
            self.box = SecretBox.from_settings(settings, create_key_file=not dry_run)
            self.secret_policy = SecretReferencePolicy.from_settings(settings)
            self.executors = ExecutorStore(
                registry, self.box, AddressPolicy.from_settings(settings), self.secret_policy
            )
            self.workflows = WorkflowStore(registry, self.box, self.secret_policy)
        self.migrated = migrated
        self.actor = actor or Actor("user", f"cli:{_user()}", "127.0.0.1")

    def reference_executors(self):
        from flowker.validation.documents import EXECUTOR, make_document
        from flowker.storage.models import Executor

        if not self.migrated:
            return []
        return [
            make_document(EXECUTOR, e.spec, f"<database executor {e.name}>", from_file=False) for e in Executor.select()
        ]

    def current(self, document) -> Current | None:
        from flowker.catalog.executors import same_spec
        from flowker.catalog.workflows import SECRET_PATHS

        if not self.migrated:
            return None
        if document.kind == "Executor":
            existing: Executor | Workflow | None = self.executors.get_by_name(document.name)
            paths: Iterable[tuple] = self.executors.secret_paths(document.body) if existing else ()
        else:
            existing = self.workflows.get_by_name(document.name)
            paths = SECRET_PATHS
        if existing is None:
            return None
        unchanged = existing.spec == document.body or same_spec(existing.spec, document.body, paths, self.box)
        return Current(existing.id, existing.status, unchanged)

    def perform(self, step: str, document, resource_id: str | None) -> dict:
        from flowker.errors import FlowkerError

        try:
            return self._perform(step, document, resource_id)
        except FlowkerError:
            # A writer outside the sync lock (the REST API) got there first: what it made
            # is what this step would make, so the step is done.
            done = self._already_done(step, document)
            if done is None:
                raise
            return done

    def _already_done(self, step: str, document) -> dict | None:
        if step not in ("create", "activate"):
            return None
        current = self.current(document)
        if current is None or not current.unchanged:
            return None
        if step == "activate" and current.status != "active":
            return None
        return {"id": current.id}

    def _perform(self, step: str, document, resource_id: str | None) -> dict:
        if step == "create":
            saved: Executor | Workflow = (self.executors if document.kind == "Executor" else self.workflows).create(
                document, self.actor
            )
            return {"id": saved.id, "version": saved.version}
        assert resource_id is not None  # every step but create acts on a resource that exists
        if document.kind == "Executor":
            if step == "enable":
                saved = self.executors.enable(resource_id, self.actor)
            else:
                saved = self.executors.update(resource_id, document, self.actor).executor
            return {"id": saved.id, "version": saved.version}
        store = self.workflows
        operation = {
            "update": lambda: store.update(resource_id, document, self.actor).workflow,
            "activate": lambda: store.activate(resource_id, self.actor),
            "deactivate": lambda: store.deactivate(resource_id, self.actor),
            "draft": lambda: store.to_draft(resource_id, self.actor),
        }[step]
        saved = operation()
        return {"id": saved.id, "version": saved.version}


def install_for_run(settings, registry, documents, actor, *, runtime=None):
    """``flowker run``: the executors among ``documents`` created, updated or enabled, and the
    workflow (the first document) brought to active holding this spec: ``flowker apply
    --activate``'s plan, plus enabling. A failing step raises its error. Answers the workflow."""
    target = LocalTarget(settings, registry, actor=actor, runtime=runtime)
    for change in plan_changes(documents, target, activate=True, enable_executors=True):
        try:
            apply_change(change, target)
        except StepFailed as failed:
            raise failed.cause from None
    workflow = target.workflows.get_by_name(documents[0].name)
    assert workflow is not None  # created above, or the plan would have failed
    return workflow


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (containers): still a usable actor
        return "unknown"
