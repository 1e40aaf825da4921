"""``flowker apply DIR``: sync a folder of specs into the database or a server (GitOps).

Every file is loaded and validated first (workflows resolve executors among the
folder's and the target's); then the plan is printed, executors before workflows,
one line per resource: ``create``, ``update`` or ``unchanged``, with the lifecycle
steps it takes. Nothing changes when a spec is invalid or an update would be refused
(a changed active workflow without ``--activate``). Then each step runs through the
same domain operations as the REST API, so each is audited, and an unchanged spec
changes nothing at all (no version, no audit entry).

Targets: the local database (``--db`` or FLOWKER_DATABASE_URL) through the stores, or
a server (``--server URL --api-key KEY``) over REST. The key is never printed.
Exit codes: 0 applied (or planned, with ``--dry-run``), 1 something failed, 2 usage.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import click
import rfc8785

from flowker.cli.common import load_settings

if TYPE_CHECKING:
    from flowker.spec.documents import SpecDocument
    from flowker.storage.models import Executor, Workflow

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


def plan_changes(documents, backend, *, activate: bool) -> list[Change]:
    """The changes, executors first, each kind in file order."""
    changes = []
    for kind in ("Executor", "Workflow"):
        for document in documents:
            if document.kind != kind:
                continue
            current = backend.current(document)
            changes.append(_executor_change(document, current) if kind == "Executor"
                           else _workflow_change(document, current, activate))
    return changes


def _executor_change(document, current: Current | None) -> Change:
    if current is None:
        return Change(document, CREATE, None, ["create"])
    if current.unchanged:
        return Change(document, UNCHANGED, current)
    return Change(document, UPDATE, current, ["update"])


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
    return Change(document, UPDATE, current, refusal="the workflow is active and changed; --activate moves it "
                  "through deactivate, draft, update and activate")


def run_changes(changes: list[Change], backend) -> bool:
    """Apply every change in order; stop at the first failure (reported). True when all applied."""
    from flowker.errors import FlowkerError

    for change in changes:
        if not change.steps:
            continue
        resource_id = change.current.id if change.current else None
        done: list[str] = []
        for step in change.steps:
            try:
                result = backend.perform(step, change.document, resource_id)
            except FlowkerError as exc:
                finished = f" after {', '.join(done)}" if done else ""
                click.echo(f"  {change.kind} {change.document.name}: {step} failed{finished}: {exc.message}", err=True)
                return False
            resource_id = result.get("id") or resource_id
            version = result.get("version") if step in ("create", "update") else None
            done.append(_past(step) + (f" (version {version})" if version else ""))
        click.echo(f"  {change.kind} {change.document.name}: {', '.join(done)}")
    return True


def _past(step: str) -> str:
    return {"create": "created", "update": "updated", "activate": "activated", "deactivate": "deactivated",
            "draft": "moved to draft"}[step]


def summary(changes: list[Change]) -> str:
    counts = {action: sum(1 for c in changes if c.action == action) for action in (CREATE, UPDATE, UNCHANGED)}
    return f"{counts[CREATE]} to create, {counts[UPDATE]} to update, {counts[UNCHANGED]} unchanged"


# --------------------------------------------------------------------------- loading


def load_documents(directory: Path):
    """Every spec under ``directory`` and the problems that stopped any from loading."""
    from flowker.cli.validate import find_spec_files
    from flowker.errors import SpecError
    from flowker.spec.loader import load_spec_file

    documents, problems = [], []
    for path in find_spec_files(directory):
        try:
            documents.append(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)
    return documents, problems


def body_of(document) -> dict:
    """The REST body of a document (``kind`` included, which the API checks)."""
    return {"kind": document.kind, **document.body}


def same_body(left: dict, right: dict) -> bool:
    def clean(body):
        return {k: v for k, v in body.items() if k != "kind" and not (k in ("description", "metadata") and v is None)}

    return rfc8785.dumps(clean(left)) == rfc8785.dumps(clean(right))


def sync(directory, backend, registry, *, activate: bool, dry_run: bool, target: str) -> bool:
    """Validate, plan, print, apply. True when everything asked for succeeded."""
    from flowker.spec.checks import validate_documents
    from flowker.spec.documents import ExecutorSpec

    directory = Path(directory)
    documents, problems = load_documents(directory)
    if not documents and not problems:
        click.echo(f"no spec files (*.yaml, *.yml) under {directory}", err=True)
        return False
    names = {d.name for d in documents if isinstance(d, ExecutorSpec)}
    references = [e for e in backend.reference_executors() if e.name not in names]
    # A local target applies this environment's secret reference rules; a server its own.
    problems = problems + validate_documents(documents, registry, reference_executors=references,
                                             secret_policy=getattr(backend, "secret_policy", None))
    if problems:
        for problem in problems:
            click.echo(problem.format(), err=True)
        click.echo(f"{len(problems)} problem(s) in {directory}: nothing applied", err=True)
        return False

    changes = plan_changes(documents, backend, activate=activate)
    click.echo(f"Plan for {directory} -> {target}:")
    for change in changes:
        click.echo(change.describe())
    click.echo(f"Plan: {summary(changes)}.")
    refused = [c for c in changes if c.refusal]
    if refused:
        click.echo(f"{len(refused)} change(s) refused: nothing applied", err=True)
        return False
    if dry_run:
        click.echo("Dry run: nothing changed.")
        return True
    if not any(c.steps for c in changes):
        click.echo("Nothing to do.")
        return True
    click.echo("Applying:")
    if not run_changes(changes, backend):
        click.echo("apply stopped at the first failure (the steps above it were applied)", err=True)
        return False
    click.echo("Applied.")
    return True


# --------------------------------------------------------------------------- the command


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--server", help="Flowker server URL (default: the local database).")
@click.option("--api-key", envvar="FLOWKER_API_KEY", help="API key for --server (or FLOWKER_API_KEY).")
@click.option("--activate", is_flag=True, help="Activate new workflows; move changed active ones through draft and back.")
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@click.option("--db", "database_url", help="Database URL for local mode (default: FLOWKER_DATABASE_URL).")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Seconds per REST request.")
@click.pass_context
def apply(ctx, directory, server, api_key, activate, dry_run, database_url, timeout):
    """Sync the workflows and executors of DIRECTORY into the database or a server."""
    from flowker.plugins import load_registry

    if server and database_url:
        raise click.UsageError("--db and --server are alternatives")
    if server and not api_key:
        raise click.UsageError("--server needs --api-key (or FLOWKER_API_KEY)")
    settings = load_settings(ctx, database_url=database_url)
    registry = load_registry(settings)
    if server:
        ok = sync(directory, RemoteTarget(server, api_key, timeout), registry,
                  activate=activate, dry_run=dry_run, target=server)
    else:
        ok = apply_local(settings, registry, directory, activate=activate, dry_run=dry_run)
    if not ok:
        ctx.exit(1)


def apply_local(settings, registry, directory, *, activate: bool, dry_run: bool = False, runtime=None) -> bool:
    """Sync into the database of ``settings``. ``runtime``: one whose database is already
    migrated (``flowker serve``); otherwise one is built here, its database migrated unless
    this is a dry run, and closed at the end."""
    from flowker.cli.serve import database_label
    from flowker.runtime import Runtime
    from flowker.storage.database import exclusive_transaction
    from flowker.storage.migrations import upgrade

    label = database_label(settings.database_url)
    if dry_run and runtime is None and _missing_sqlite_file(settings.database_url):
        # Nothing to read, and a dry run must not create the file: everything is new.
        target = LocalTarget(settings, registry, migrated=False)
        return sync(directory, target, registry, activate=activate, dry_run=True, target=label)
    own_runtime = runtime is None
    if runtime is None:
        runtime = Runtime.from_settings(settings, registry=registry)
    database = runtime.database
    try:
        if own_runtime and not dry_run:
            upgrade(database)
        with runtime.bound(), database.connection_context():
            if dry_run:
                target = LocalTarget(settings, registry, migrated=_migrated(database), runtime=runtime)
                return sync(directory, target, registry, activate=activate, dry_run=True, target=label)
            # Several servers may start with --specs at once: one sync at a time, each planning
            # only once it holds the lock, so the later ones find everything done.
            with exclusive_transaction(database, SPEC_SYNC_LOCK_ID):
                target = LocalTarget(settings, registry, migrated=_migrated(database), runtime=runtime)
                return sync(directory, target, registry, activate=activate, dry_run=False, target=label)
    finally:
        if own_runtime:
            runtime.close()


def _missing_sqlite_file(url: str) -> bool:
    import os

    import peewee

    from flowker.storage.database import open_database

    database = open_database(url)  # does not connect
    return isinstance(database, peewee.SqliteDatabase) and not os.path.exists(database.database)


def _unopened(settings):
    """The database the models are bound to, else one for the settings' URL (not connected)."""
    from flowker.storage.database import database_proxy, open_database

    return database_proxy.obj or open_database(settings.database_url)


def _migrated(database) -> bool:
    from flowker.storage.models import Workflow

    return database.table_exists(Workflow._meta.table_name)


class LocalTarget:
    """The database, through the stores the REST API uses."""

    def __init__(self, settings, registry, *, migrated: bool = True, runtime=None):
        from flowker.audit.chain import Actor

        if runtime is None:  # e.g. a dry run against a database that does not exist yet
            from flowker.runtime import Runtime

            runtime = Runtime.from_settings(settings, registry=registry, database=_unopened(settings),
                                            bind_process=False)
            runtime.execution_service.close()  # not used here: only the stores are
        self.box = runtime.secret_box
        self.secret_policy = runtime.secret_policy
        self.executors = runtime.executors
        self.workflows = runtime.workflows
        self.migrated = migrated
        self.actor = Actor("user", f"cli:{_user()}", "127.0.0.1")

    def reference_executors(self):
        from flowker.spec.documents import EXECUTOR, make_document
        from flowker.storage.models import Executor

        if not self.migrated:
            return []
        return [make_document(EXECUTOR, e.spec, f"<database executor {e.name}>", from_file=False)
                for e in Executor.select()]

    def current(self, document) -> Current | None:
        from flowker.storage.executor_store import same_spec
        from flowker.storage.workflow_store import SECRET_PATHS

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
                document, self.actor)
            return {"id": saved.id, "version": saved.version}
        assert resource_id is not None  # every step but create acts on a resource that exists
        if document.kind == "Executor":
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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (containers): still a usable actor
        return "unknown"


class RemoteTarget:
    """A Flowker server over REST (JSON bodies). Error messages come from the server's
    ``{code,title,message}``; the API key is only ever a request header."""

    PAGE = 100

    def __init__(self, server: str, api_key: str, timeout: float = 60.0):
        import requests

        self.server = server.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # No proxies or netrc from the environment: the key goes to this server only.
        self.session.trust_env = False
        self.session.headers.update({"X-API-Key": api_key, "Accept": "application/json"})
        self._listed: dict[str, dict] = {}

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        import requests

        from flowker.errors import FlowkerError

        try:
            response = self.session.request(method, self.server + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise FlowkerError(f"{method} {self.server}{path}: {type(exc).__name__}: server unreachable") from None
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            if isinstance(payload, dict) and payload.get("code"):
                detail = f"{payload.get('code')} {payload.get('message', '')}".strip()
            else:
                detail = response.reason or "error"
            raise FlowkerError(f"{method} {path}: HTTP {response.status_code} {detail}")
        return payload if isinstance(payload, dict) else {}

    def _all(self, collection: str) -> dict[str, dict]:
        """Every item of a collection by name (cursor pages, bounded)."""
        if collection not in self._listed:
            items, cursor = {}, None
            for _ in range(10_000):
                query = f"?limit={self.PAGE}" + (f"&cursor={cursor}" if cursor else "")
                page = self.request("GET", f"/v1/{collection}{query}")
                for item in page.get("items", []):
                    items[item["name"]] = item
                cursor = page.get("nextCursor")
                if not page.get("hasMore") or not cursor:
                    break
            self._listed[collection] = items
        return self._listed[collection]

    @staticmethod
    def _spec_of(view: dict, kind: str) -> dict:
        keys = ("name", "description", "baseUrl", "endpoints", "authentication", "metadata") if kind == "Executor" \
            else ("name", "description", "nodes", "edges", "metadata")
        return {key: view[key] for key in keys if key in view}

    def reference_executors(self):
        from flowker.spec.documents import EXECUTOR, make_document

        return [make_document(EXECUTOR, self._spec_of(view, "Executor"), f"<{self.server} executor {name}>", from_file=False)
                for name, view in self._all("executors").items()]

    def current(self, document) -> Current | None:
        view = self._all("executors" if document.kind == "Executor" else "workflows").get(document.name)
        if view is None:
            return None
        # Files hold no literal secrets (only references, shown as they are), so the view
        # compares exactly with the file's body.
        unchanged = same_body(self._spec_of(view, document.kind), document.body)
        return Current(view["id"], view.get("status", ""), unchanged)

    def perform(self, step: str, document, resource_id: str | None) -> dict:
        collection = "executors" if document.kind == "Executor" else "workflows"
        if step == "create":
            created = self.request("POST", f"/v1/{collection}", body_of(document))
            return {"id": created.get("id") or created.get("workflowId"), "version": created.get("version")}
        if step == "update":
            return self.request("PUT", f"/v1/{collection}/{resource_id}", body_of(document))
        return self.request("POST", f"/v1/{collection}/{resource_id}/{step}")
