"""``flowker apply DIR``: sync a folder of specs into the database or a server (GitOps).

Every file is loaded and validated first (workflows resolve executors among the
folder's and the target's); then the plan is printed, executors before workflows,
one line per resource: ``create``, ``update`` or ``unchanged``, with the lifecycle
steps it takes. Nothing changes when a spec is invalid or an update would be refused
(a changed active workflow without ``--activate``). Then each step runs through the
same domain operations as the REST API, so each is audited, and an unchanged spec
changes nothing at all (no version, no audit entry).

Targets: the local database (``--db`` or FLOWKER_DATABASE_URL) through the catalog
services, or a server (``--server URL --api-key KEY``) over REST. The key is never
printed. Planning and applying are :mod:`flowker.catalog.spec_sync`; the remote target
is here.
Exit codes: 0 applied (or planned, with ``--dry-run``), 1 something failed, 2 usage.
"""

from __future__ import annotations

from pathlib import Path

import click
import rfc8785

from flowker.catalog.spec_sync import Current
from flowker.cli.common import DATABASE_HELP, announce_database, load_settings


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--server", help="Flowker server URL (default: the local database).")
@click.option("--api-key", envvar="FLOWKER_API_KEY", help="API key for --server (or FLOWKER_API_KEY).")
@click.option(
    "--activate", is_flag=True, help="Activate new workflows; move changed active ones through draft and back."
)
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@click.option("--db", "database_url", metavar="URL|PATH", help="Local mode: " + DATABASE_HELP)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Seconds per REST request."
)
@click.pass_context
def apply(ctx, directory, server, api_key, activate, dry_run, database_url, timeout):
    """Sync the workflows and executors of DIRECTORY into the database or a server."""
    from flowker.catalog.spec_sync import apply_local, sync
    from flowker.plugins import load_registry

    if server and database_url:
        raise click.UsageError("--db and --server are alternatives")
    if server and not api_key:
        raise click.UsageError("--server needs --api-key (or FLOWKER_API_KEY)")
    settings = load_settings(ctx, database_url=database_url)
    registry = load_registry(settings)
    if server:
        ok = sync(
            directory,
            RemoteTarget(server, api_key, timeout),
            registry,
            activate=activate,
            dry_run=dry_run,
            target=server,
            echo=click.echo,
        )
    else:
        announce_database(ctx, settings, database_url)
        ok = apply_local(settings, registry, directory, activate=activate, dry_run=dry_run, echo=click.echo)
    if not ok:
        ctx.exit(1)


def body_of(document) -> dict:
    """The REST body of a document (``kind`` included, which the API checks)."""
    return {"kind": document.kind, **document.body}


def same_body(left: dict, right: dict) -> bool:
    def clean(body):
        return {k: v for k, v in body.items() if k != "kind" and not (k in ("description", "metadata") and v is None)}

    return rfc8785.dumps(clean(left)) == rfc8785.dumps(clean(right))


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
        keys = (
            ("name", "description", "baseUrl", "endpoints", "authentication", "metadata")
            if kind == "Executor"
            else ("name", "description", "nodes", "edges", "metadata")
        )
        return {key: view[key] for key in keys if key in view}

    def reference_executors(self):
        from flowker.validation.documents import EXECUTOR, make_document

        return [
            make_document(
                EXECUTOR, self._spec_of(view, "Executor"), f"<{self.server} executor {name}>", from_file=False
            )
            for name, view in self._all("executors").items()
        ]

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
