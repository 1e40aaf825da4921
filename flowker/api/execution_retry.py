"""``POST /v1/executions/{id}/retry``: queue a retry of a failed execution (DESIGN 16).

Answers 202 with the new execution's summary (``status: queued``, ``retryOf``) and its
Location; a worker claims and runs it from the step that failed (flowker.runner.retry).
A repeated ``Idempotency-Key`` answers 200 with the retry it made. An execution that is
not failed: 422 FLK-0530; one already retried: 409 FLK-0531 (naming the retry).
Permission: run (operator and above), within the caller's workflow scope.
"""

from __future__ import annotations

import falcon

from flowker.api.executions import idempotency_key, load_execution
from flowker.api.scope import require_visible_execution
from flowker.api.views import checked_id, execution_summary


class Retry:
    def __init__(self, state):
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response, execution_id: str) -> None:
        from flowker.runner.retry import retry_execution

        original = load_execution(checked_id(execution_id, "execution"))
        require_visible_execution(req, original)
        key = idempotency_key(req)
        started = retry_execution(
            self.state.execution_service, original.id, actor=req.context.actor, idempotency_key=key
        )
        if started.created:
            self.state.wake_queue()  # this process's worker, if it has one, claims it at once
        resp.status = falcon.HTTP_202 if started.created else falcon.HTTP_200
        resp.location = f"/v1/executions/{started.execution.id}"
        resp.media = execution_summary(started.execution)
