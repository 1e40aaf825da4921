"""``/v1/workflows``: create (JSON or YAML), list, get, replace (drafts), delete
(not active), activate / deactivate / draft, clone."""

from __future__ import annotations

import falcon
import peewee

from flowker.api.bodies import json_object, spec_body
from flowker.api.scope import require_name_in_scope, require_visible_workflow, scoped_workflows, spec_name
from flowker.api.pagination import fetch_page, parse_choice, parse_limit, resolve_sort
from flowker.api.views import checked_id, workflow_created, workflow_view
from flowker.errors import SpecError
from flowker.validation.problems import Problem
from flowker.storage.models import Workflow
from flowker.catalog.workflows import STATUSES

SORT_COLUMNS: dict[str, peewee.Field] = {
    "createdAt": Workflow.created_at,
    "updatedAt": Workflow.updated_at,
    "name": Workflow.name,
}
DEFAULT_LIMIT = 10


class _Resource:
    def __init__(self, state):
        self.state = state
        self.store = state.workflows

    def view(self, workflow) -> dict:
        return workflow_view(workflow, self.store.public_spec(workflow))


class Collection(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        spec = spec_body(req, "Workflow")
        require_name_in_scope(req, spec_name(spec), self.state)
        workflow = self.store.create(spec, req.context.actor)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/workflows/{workflow.id}"
        resp.media = workflow_created(workflow)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = parse_choice("status", req.get_param("status"), STATUSES)
        limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
        sort, cursor = resolve_sort(
            req.get_param("cursor"),
            req.get_param("sortBy"),
            req.get_param("sortOrder"),
            SORT_COLUMNS,
            Workflow.id,
            "createdAt",
        )
        page = fetch_page(scoped_workflows(req, self.store.query(status)), sort, cursor, limit)
        resp.media = page.body(self.view)


class Item(_Resource):
    def on_get(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        resp.media = self.view(self.store.get(workflow_id))

    def on_put(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        self.store.get(workflow_id)  # 404 before reading a body for nothing
        spec = spec_body(req, "Workflow")
        require_name_in_scope(req, spec_name(spec), self.state)
        result = self.store.update(workflow_id, spec, req.context.actor)
        resp.media = self.view(result.workflow)

    def on_delete(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        self.store.delete(workflow_id, req.context.actor)
        resp.status = falcon.HTTP_204


class Transition(_Resource):
    """POST .../activate, .../deactivate, .../draft: 200 with the workflow."""

    def __init__(self, state, verb: str):
        super().__init__(state)
        self.verb = verb

    def on_post(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        operation = {
            "activate": self.store.activate,
            "deactivate": self.store.deactivate,
            "draft": self.store.to_draft,
        }[self.verb]
        resp.media = self.view(operation(workflow_id, req.context.actor))


class Clone(_Resource):
    """POST .../clone ``{"name": "..."}``: a new draft with the source's nodes and edges."""

    def on_post(self, req, resp, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        body = json_object(req)
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise SpecError([Problem("<request>", None, None, (key,), f"unknown field {key!r}") for key in unknown])
        # A missing or blank name fails the spec checks (422) like any other workflow name.
        if body.get("name") is not None:
            require_name_in_scope(req, body.get("name"), self.state)
        workflow = self.store.clone(workflow_id, body.get("name"), req.context.actor)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/workflows/{workflow.id}"
        resp.media = workflow_created(workflow)
