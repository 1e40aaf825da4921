"""What one execution tells the operator: metrics and log lines (DESIGN §14).

The recorder calls :meth:`RunTelemetry.step_settled` for each step and
:meth:`RunTelemetry.execution_ended` once the end is committed. Labels are names (the
workflow's, the executor's and endpoint's, the node type), never ids.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flowker.error_codes import ErrorCode
from flowker.observability.logs import EXECUTION_LOGGER
from flowker.runner.engine import FAILED

if TYPE_CHECKING:
    from flowker.observability.metrics import Metrics
    from flowker.runner.engine import StepRecord

logger = logging.getLogger(EXECUTION_LOGGER)
# Where no handler is configured (``flowker run`` prints its steps itself), these lines go
# nowhere instead of to Python's last-resort stderr handler; configured roots still get them.
logger.addHandler(logging.NullHandler())

MAX_LOGGED_ERROR = 500

# An attempt's outcome in the call record -> the metric's outcome label.
_ATTEMPT_OUTCOMES = {"retryable": "retryable_status", "network-error": "network_error", "error": "error"}


def attempt_outcome(attempt: dict) -> str:
    if attempt.get("outcome") == "answered":
        return "success" if 200 <= int(attempt.get("statusCode") or 0) < 300 else "http_error"
    return _ATTEMPT_OUTCOMES.get(str(attempt.get("outcome")), "error")


class RunTelemetry:
    """Metrics and log lines of one execution of ``workflow`` (its name)."""

    def __init__(self, metrics: Metrics, execution_id: str, workflow: str):
        self.metrics = metrics
        self.execution_id = execution_id
        self.workflow = workflow

    def step_settled(self, record: StepRecord) -> None:
        node = record.node
        self.metrics.step_settled(self.workflow, node.type, record.status)
        call = record.call
        if call is not None:
            executor, endpoint = call.executor or "unknown", call.endpoint or "unknown"
            for attempt in call.attempts:
                duration = attempt.get("durationMs")
                seconds = duration / 1000.0 if isinstance(duration, (int, float)) else None
                self.metrics.executor_attempt(executor, endpoint, attempt_outcome(attempt), seconds)
            if not call.attempts and call.error is not None and call.error.code == ErrorCode.CIRCUIT_OPEN:
                self.metrics.executor_attempt(executor, endpoint, "circuit_open", None)
            self.metrics.executor_retries(executor, len(call.attempts) - 1)
        if record.status == FAILED:
            error = (record.error or "")[:MAX_LOGGED_ERROR]
            logger.warning(
                "step %s of execution %s failed (%s, %d attempt%s): %s",
                node.id,
                self.execution_id,
                record.error_code or "no code",
                record.attempts,
                "" if record.attempts == 1 else "s",
                error,
                extra={
                    "execution_id": self.execution_id,
                    "workflow": self.workflow,
                    "node": node.id,
                    "node_type": node.type,
                    "error_code": record.error_code,
                    "attempts": record.attempts,
                },
            )

    def execution_ended(self, status: str, duration_ms: float | None) -> None:
        self.metrics.execution_ended(self.workflow, status, None if duration_ms is None else duration_ms / 1000.0)
        logger.log(
            logging.WARNING if status == FAILED else logging.INFO,
            "execution %s of workflow %s %s in %s ms",
            self.execution_id,
            self.workflow,
            status,
            "?" if duration_ms is None else f"{duration_ms:.1f}",
            extra={
                "execution_id": self.execution_id,
                "workflow": self.workflow,
                "status": status,
                "duration_ms": duration_ms,
            },
        )
