"""``/v1/workflows/{id}/versions``: the saved versions of a workflow, newest first, and
one version's spec (read-only; executions run against the version they started with)."""

from __future__ import annotations

import hashlib
import json

import peewee

from flowker.api.pagination import fetch_page, parse_limit, resolve_sort
from flowker.api.scope import require_visible_workflow
from flowker.api.views import checked_id, iso
from flowker.error_codes import ErrorCode
from flowker.errors import BadRequest
from flowker.storage.models import WorkflowVersion

SORT_COLUMNS: dict[str, peewee.Field] = {"version": WorkflowVersion.version}
DEFAULT_LIMIT = 20
MAX_VERSION = 2**31 - 1  # an integer column: larger numbers cannot be stored, so none is asked for


def checked_version(raw: str) -> int:
    """A path version must be a plain decimal integer from 1 (400 FLK-0110 otherwise)."""
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise BadRequest(
            "invalid workflow version: expected an integer from 1", code=ErrorCode.INVALID_WORKFLOW_VERSION
        )
    version = int(raw)
    if not 1 <= version <= MAX_VERSION:
        raise BadRequest(
            f"invalid workflow version: expected an integer from 1 to {MAX_VERSION}",
            code=ErrorCode.INVALID_WORKFLOW_VERSION,
        )
    return version


def spec_hash(spec: dict) -> str:
    """SHA-256 of the masked spec's canonical JSON: equal specs, equal hashes (the masked
    form, so a hash never depends on a secret or on how it was encrypted)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Resource:
    def __init__(self, state):
        self.state = state
        self.store = state.workflows

    def summary(self, row: WorkflowVersion, current_version: int) -> dict:
        spec = self.store.public_version_spec(row)
        return {
            "version": row.version,
            "createdAt": iso(row.created_at),
            "current": row.version == current_version,
            "specHash": spec_hash(spec),
            "nodeCount": len(spec.get("nodes") or []),
        }


class Collection(_Resource):
    def on_get(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        workflow = self.store.get(workflow_id)
        limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
        sort, cursor = resolve_sort(
            req.get_param("cursor"),
            None,
            req.get_param("sortOrder"),
            SORT_COLUMNS,
            WorkflowVersion.version,
            "version",
        )
        page = fetch_page(self.store.versions(workflow_id), sort, cursor, limit)
        resp.media = page.body(lambda row: self.summary(row, workflow.version))


class Item(_Resource):
    def on_get(self, req, resp, workflow_id: str, version: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        number = checked_version(version)
        require_visible_workflow(req, workflow_id)
        workflow = self.store.get(workflow_id)
        row = self.store.get_version(workflow_id, number)
        spec = self.store.public_version_spec(row)
        view = {
            "workflowId": workflow_id,
            "version": row.version,
            "current": row.version == workflow.version,
            "name": spec.get("name", workflow.name),
            "nodes": spec.get("nodes", []),
            "edges": spec.get("edges", []),
            "createdAt": iso(row.created_at),
            "specHash": spec_hash(spec),
        }
        for key in ("description", "metadata"):
            if spec.get(key) is not None:
                view[key] = spec[key]
        resp.media = view
