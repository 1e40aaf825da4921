"""``/v1/executors``: create, list, get (secrets masked), PUT, PATCH (JSON Merge Patch),
DELETE, enable / disable, and the connectivity ``test``."""

from __future__ import annotations

import falcon
import peewee

from flowker.api.bodies import json_object, spec_body
from flowker.api.executor_probe import ExecutorProbe
from flowker.api.pagination import fetch_page, parse_choice, parse_limit, resolve_sort
from flowker.api.views import checked_id, executor_created, executor_view
from flowker.catalog.executors import STATUSES
from flowker.storage.models import Executor

SORT_COLUMNS: dict[str, peewee.Field] = {
    "createdAt": Executor.created_at,
    "updatedAt": Executor.updated_at,
    "name": Executor.name,
}
DEFAULT_LIMIT = 10
MERGE_PATCH_TYPES = ("application/merge-patch+json",)


class _Resource:
    def __init__(self, state):
        self.state = state
        self.store = state.executors

    def view(self, executor) -> dict:
        return executor_view(executor, self.store.public_spec(executor))


class Collection(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        executor = self.store.create(spec_body(req, "Executor"), req.context.actor)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/executors/{executor.id}"
        resp.media = executor_created(executor)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = parse_choice("status", req.get_param("status"), STATUSES)
        limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
        sort, cursor = resolve_sort(
            req.get_param("cursor"),
            req.get_param("sortBy"),
            req.get_param("sortOrder"),
            SORT_COLUMNS,
            Executor.id,
            "createdAt",
        )
        page = fetch_page(self.store.query(status), sort, cursor, limit)
        resp.media = page.body(self.view)


class Item(_Resource):
    def on_get(self, req, resp, executor_id: str) -> None:
        resp.media = self.view(self.store.get(checked_id(executor_id, "executor")))

    def on_put(self, req, resp, executor_id: str) -> None:
        executor_id = checked_id(executor_id, "executor")
        self.store.get(executor_id)
        result = self.store.update(executor_id, spec_body(req, "Executor"), req.context.actor)
        resp.media = self.view(result.executor)

    def on_patch(self, req, resp, executor_id: str) -> None:
        executor_id = checked_id(executor_id, "executor")
        self.store.get(executor_id)
        result = self.store.patch(executor_id, json_object(req), req.context.actor)
        resp.media = self.view(result.executor)

    def on_delete(self, req, resp, executor_id: str) -> None:
        self.store.delete(checked_id(executor_id, "executor"), req.context.actor)
        resp.status = falcon.HTTP_204


class Status(_Resource):
    """POST .../enable and .../disable: 200 with the executor."""

    def __init__(self, state, verb: str):
        super().__init__(state)
        self.verb = verb

    def on_post(self, req, resp, executor_id: str) -> None:
        executor_id = checked_id(executor_id, "executor")
        operation = self.store.enable if self.verb == "enable" else self.store.disable
        resp.media = self.view(operation(executor_id, req.context.actor))


class Test(_Resource):
    """POST .../test: the three-stage connectivity probe; records ``lastTestedAt``."""

    def __init__(self, state):
        super().__init__(state)
        self.probe = ExecutorProbe(
            state.settings, state.registry, state.secret_box, state.address_policy, redactor=state.redactor
        )

    def on_post(self, req, resp, executor_id: str) -> None:
        executor = self.store.get(checked_id(executor_id, "executor"))
        report = self.probe.run(executor, executor.spec)
        self.store.mark_tested(executor.id, req.context.actor, report["overallStatus"])
        resp.media = report
