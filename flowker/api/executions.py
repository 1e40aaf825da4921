"""Executions: start (``POST /v1/workflows/{id}/executions``), list, get, results.

Starting is synchronous by default (201 once the run has finished). ``Prefer:
respond-async`` answers 202 with status ``running`` and runs in the app's bounded
background pool (503 when it is full, before anything is created). A repeated
``Idempotency-Key`` for the same workflow answers 200 with the first execution and
never runs again; the same key with another body is 422 (FLK-0508, from the service).
"""

from __future__ import annotations

import re

import falcon

from flowker.api.bodies import json_object
from flowker.api.errors import unavailable
from flowker.api.pagination import fetch_page, parse_choice, parse_limit, resolve_sort
from flowker.api.scope import require_visible_execution, require_visible_workflow, scoped_executions
from flowker.api.views import checked_id
from flowker.errors import BadRequest, NotFound, UnprocessableEntity
from flowker.storage.models import Execution
from flowker.error_codes import ErrorCode

STATUSES = ("queued", "running", "completed", "failed")
TERMINAL = ("completed", "failed")
DEFAULT_LIMIT = 10
_KEY = re.compile(r"^[\x21-\x7e]{1,255}\Z")


def idempotency_key(req: falcon.Request) -> str | None:
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", code=ErrorCode.INVALID_IDEMPOTENCY_KEY
        )
    return key


def wants_async(req: falcon.Request) -> bool:
    """``Prefer: respond-async`` (RFC 7240), among other preferences or with parameters."""
    for header in req.get_header("Prefer", default="").split(","):
        if header.split(";", 1)[0].strip().lower() == "respond-async":
            return True
    return False


def summary(execution) -> dict:
    from flowker.api.views import execution_summary

    return execution_summary(execution)


def load_execution(execution_id: str) -> Execution:
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} not found", code=ErrorCode.EXECUTION_NOT_FOUND)
    return execution


def start_execution(
    state,
    req,
    resp,
    workflow_id: str,
    input_data,
    *,
    key: str | None,
    headers: dict | None = None,
    digest: str | None = None,
    checked_input=None,
) -> Execution:
    """Start (and, unless async, run) an execution and write the response. Shared with webhooks."""
    if state.is_draining:
        raise unavailable("this instance is shutting down: retry the request")
    service = state.execution_service
    actor = req.context.actor
    asynchronous = wants_async(req)
    # A W3C traceparent on the request: the run's span continues that trace (flowker.tracing).
    trace_parent = service.tracing.extract(req.get_header)

    def start():
        return service.start(
            workflow_id,
            input_data,
            actor=actor,
            idempotency_key=key,
            request_digest=digest,
            checked_input=checked_input,
        )

    if asynchronous:
        if not state.background.try_reserve():
            raise unavailable(
                "too many executions are waiting to run: retry later or drop Prefer: respond-async",
                code=ErrorCode.RUN_QUEUE_FULL,
            )
        try:
            started = start()
        except BaseException:
            state.background.release()
            raise
        if started.created:
            state.background.submit(started.execution.id, trace_parent=trace_parent)
        else:
            state.background.release()
        execution = started.execution  # as created: running
    else:
        started = start()
        # The row start() just created is run as it is, not read back first.
        execution = (
            service.run_started(started.execution, trace_parent=trace_parent) if started.created else started.execution
        )
    if not started.created:
        resp.status = falcon.HTTP_200
    elif asynchronous:
        resp.status = falcon.HTTP_202
        resp.set_header("Preference-Applied", "respond-async")
    else:
        resp.status = falcon.HTTP_201
    resp.location = f"/v1/executions/{execution.id}"
    for name, value in (headers or {}).items():
        resp.set_header(name, value)
    resp.media = summary(execution)
    return execution


class Start:
    def __init__(self, state):
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        workflow_id = checked_id(workflow_id, "workflow")
        require_visible_workflow(req, workflow_id)
        key = idempotency_key(req)
        body = json_object(req, empty={})
        unknown = sorted(set(body) - {"inputData"})
        if unknown:
            raise UnprocessableEntity(
                f'unknown field(s) {", ".join(repr(name) for name in unknown)}: the body is {{"inputData": {{...}}}}',
                code=ErrorCode.INVALID_EXECUTION_REQUEST,
            )
        input_data = body.get("inputData", {})
        if not isinstance(input_data, dict):
            raise UnprocessableEntity("inputData must be a JSON object", code=ErrorCode.INVALID_EXECUTION_REQUEST)
        start_execution(self.state, req, resp, workflow_id, input_data, key=key)


class Collection:
    SORT_COLUMNS = {"startedAt": Execution.started_at}

    def __init__(self, state):
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = scoped_executions(req, Execution.select())
        workflow_id = req.get_param("workflowId")
        if workflow_id is not None:
            query = query.where(Execution.workflow_id == checked_id(workflow_id, "workflow"))
        status = parse_choice("status", req.get_param("status"), STATUSES)
        if status:
            query = query.where(Execution.status == status)
        limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
        sort, cursor = resolve_sort(
            req.get_param("cursor"),
            req.get_param("sortBy"),
            req.get_param("sortOrder"),
            self.SORT_COLUMNS,
            Execution.id,
            "startedAt",
        )
        resp.media = fetch_page(query, sort, cursor, limit).body(summary)


class Item:
    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp, execution_id: str) -> None:
        execution = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, execution)
        resp.media = summary(execution)


class Results:
    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp, execution_id: str) -> None:
        from flowker.api.views import execution_results

        execution = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, execution)
        if execution.status not in TERMINAL:
            raise UnprocessableEntity(
                f"execution {execution.id} is {execution.status}: results are ready when it has completed or failed",
                code=ErrorCode.RESULTS_NOT_READY,
            )
        resp.media = execution_results(execution)
