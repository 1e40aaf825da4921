"""Executions: start (``POST /v1/workflows/{id}/executions``), list, get, results, steps.

Starting is synchronous by default (201 once the run has finished). ``Prefer:
respond-async`` (and a webhook trigger declared ``mode: async``) stores the run as a
``queued`` execution and answers 202 at once; a queue worker (flowker.queue: ``flowker
worker``, or ``flowker serve`` itself unless ``--no-worker``) claims and runs it. There
is no "pool full": work waits in the queue. A repeated
``Idempotency-Key`` for the same workflow answers 200 with the first execution and
never runs again; the same key with another body is 422 (FLK-0508, from the service).
"""

from __future__ import annotations

import re

import falcon

from flowker.api.bodies import json_object
from flowker.api.errors import bad_query, unavailable
from flowker.runner.service import TRACE_PARENT_LENGTH
from flowker.api.pagination import fetch_page, parse_choice, parse_limit, resolve_sort
from flowker.api.scope import require_visible_execution, require_visible_workflow, scoped_executions
from flowker.api.views import checked_id, parse_time
from flowker.errors import BadRequest, NotFound, UnprocessableEntity
from flowker.storage.models import Execution, StepResult
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
    queued: bool = False,
) -> Execution:
    """Start and run an execution, or queue it (``Prefer: respond-async``, or ``queued``:
    a webhook trigger declared ``mode: async``), and write the response. Shared with webhooks."""
    if state.is_draining:
        raise unavailable("this instance is shutting down: retry the request")
    service = state.execution_service
    actor = req.context.actor
    preferred_async = wants_async(req)
    asynchronous = preferred_async or queued
    if asynchronous:
        # A W3C traceparent on the request is stored: the worker's run continues that trace.
        trace_parent = req.get_header("traceparent")
        started = service.enqueue(
            workflow_id,
            input_data,
            actor=actor,
            idempotency_key=key,
            request_digest=digest,
            checked_input=checked_input,
            trace_parent=trace_parent if trace_parent and len(trace_parent) == TRACE_PARENT_LENGTH else None,
        )
        if started.created:
            state.wake_queue()  # this process's worker, if it has one, claims it at once
        execution = started.execution  # as created: queued
    else:
        started = service.start(
            workflow_id,
            input_data,
            actor=actor,
            idempotency_key=key,
            request_digest=digest,
            checked_input=checked_input,
        )
        # The row start() just created is run as it is, not read back first; a W3C
        # traceparent on the request: the run's span continues that trace (flowker.tracing).
        execution = (
            service.run_started(started.execution, trace_parent=service.tracing.extract(req.get_header))
            if started.created
            else started.execution
        )
    if not started.created:
        resp.status = falcon.HTTP_200
    elif asynchronous:
        resp.status = falcon.HTTP_202
        if preferred_async:
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
        # A time range on the start (the console's day filter), bounds included.
        date_from = parse_time("dateFrom", req.get_param("dateFrom"))
        date_to = parse_time("dateTo", req.get_param("dateTo"))
        if date_from is not None and date_to is not None and date_from > date_to:
            raise bad_query("dateFrom must not be after dateTo", ErrorCode.INVALID_DATE_RANGE)
        if date_from is not None:
            query = query.where(Execution.started_at >= date_from)
        if date_to is not None:
            query = query.where(Execution.started_at <= date_to)
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
        from flowker.api.views import with_retry_link

        execution = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, execution)
        resp.media = with_retry_link(summary(execution), execution)


class Results:
    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp, execution_id: str) -> None:
        from flowker.api.views import execution_results, with_retry_link

        execution = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, execution)
        if execution.status not in TERMINAL:
            raise UnprocessableEntity(
                f"execution {execution.id} is {execution.status}: results are ready when it has completed or failed",
                code=ErrorCode.RESULTS_NOT_READY,
            )
        resp.media = with_retry_link(execution_results(execution), execution)


class Steps:
    """``GET /v1/executions/{id}/steps?after=N&limit=M``: the steps on record so far, in step
    order (the results' step view), also while the run goes on; and, while it runs,
    ``runningStep``: the first step not yet on record. A call slower than a second has the
    steps before it committed (flowker.runner.records), so during a slow call that is the
    call; otherwise it may be a step that ended less than a second ago."""

    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp, execution_id: str) -> None:
        from flowker.api.views import execution_summary, step_result_dict

        execution = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, execution)
        after = _after(req.get_param("after"))
        limit = parse_limit(req.get_param("limit"), STEPS_LIMIT)
        rows = list(
            StepResult.select()
            .where((StepResult.execution == execution.id) & (StepResult.step_number > after))
            .order_by(StepResult.step_number)
            .limit(limit + 1)
        )
        view = {
            **execution_summary(execution),
            "items": [step_result_dict(step) for step in rows[:limit]],
            "hasMore": len(rows) > limit,
        }
        if execution.status == "running":
            running = self._running_step(execution)
            if running is not None:
                view["runningStep"] = running
        resp.media = view

    def _running_step(self, execution: Execution) -> dict | None:
        from flowker.errors import FlowkerError

        try:
            plan = self.state.execution_service.plan(execution.workflow_id, execution.workflow_version)
        except FlowkerError:
            return None
        number = execution.current_step + 1
        if not 1 <= number <= len(plan.nodes):
            return None
        node = plan.nodes[number - 1]
        return {"stepNumber": number, "nodeId": node.id, "stepName": node.name, "nodeType": node.type}


STEPS_LIMIT = 100


def _after(raw: str | None) -> int:
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise bad_query("after must be a step number: an integer from 0", ErrorCode.INVALID_QUERY)
    return int(raw)
