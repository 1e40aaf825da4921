"""The graph walker: one thread runs a compiled plan step by step.

Semantics (DESIGN 4): nodes run in topological order. A node runs when all its
predecessors are settled (guaranteed by the order) and at least one incoming edge is
taken; an edge is taken when its source completed, its ``sourceHandle`` matches the
result of a conditional source (an edge without a handle matches either result), and
its ``condition``, if any, is true. A node with no taken incoming edge is ``skipped``.
Each node runs once, so a diamond's join runs once. The first failure fails the run;
every node after it is ``skipped``.

Expression variables are ``workflow`` (the input), ``nodes`` (outputs of completed
nodes only, so a skipped branch is absent: use ``has(nodes.x)``) and ``execution``
(``id``, ``workflowId``). An executor node's ``output`` mapping is evaluated with
``nodes.<that node>`` bound to its raw response ``{status, headers, body}``; the
mapping's result then replaces it as the node's output.

Persistence and progress are the :class:`StepSink`'s job, so the walker itself has no
database code and the benchmark can measure both.

A run that resumes (its process died) or retries (a failed run's completed steps reused)
is given ``seed``: the steps already on record, by node id (:class:`RecordedStep`). Those
nodes are not run again: their recorded status and output settle them, a conditional's
recorded ``{"result": bool}`` picks its branch again and an action that set the final
output sets it again; the sink never sees them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from flowker.errors import FlowkerError, OutputTooLargeError
from flowker.expressions import EvaluationBudget, ExpressionError, Variables
from flowker.runner.executor_client import CallRequest, CallResult, DeadlineExceeded
from flowker.runner.graph import EdgePlan, NodePlan, WorkflowPlan
from flowker.storage.models import utcnow
from flowker.tracing import NO_TRACING
from flowker.error_codes import ErrorCode

logger = logging.getLogger(__name__)

COMPLETED, FAILED, SKIPPED = "completed", "failed", "skipped"
# CPU seconds all expression evaluations of one execution may use together (see
# flowker.expressions.EvaluationBudget); ordinary expressions take microseconds each.
EXPRESSION_CPU_SECONDS = 1.0
# The cap on each step output, action output, executor request and final output (bytes of
# compact UTF-8 JSON): FLOWKER_MAX_OUTPUT_BYTES.
MAX_OUTPUT_BYTES = 1048576


@dataclass
class StepRecord:
    node: NodePlan
    status: str
    started_at: dt.datetime
    completed_at: dt.datetime
    duration_ms: float = 0.0
    input: Any = None
    output: Any = None
    error: str | None = None
    error_code: str | None = None
    call: CallResult | None = None  # executor nodes
    reason: str | None = None  # why a step was skipped
    reused: bool = False  # settled from a recorded step (a resume or a retry), not run now

    @property
    def attempts(self) -> int:
        if self.call is not None:
            return len(self.call.attempts)
        return 0 if self.status == SKIPPED else 1


@dataclass
class RunOutcome:
    status: str  # completed | failed
    final_output: Any = None
    error_message: str | None = None
    failed_node: str | None = None
    steps: list = field(default_factory=list)


@dataclass(frozen=True)
class RecordedStep:
    """A step already on record: what a resumed or retried run takes instead of running it.

    ``final_output`` is the execution's final output the step's action set (``sets_final_output``)."""

    node_id: str
    step_number: int
    status: str
    output: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    sets_final_output: bool = False
    final_output: Any = None


class StepSink(Protocol):
    def step_started(self, node: NodePlan) -> None: ...

    def step_finished(self, record: StepRecord) -> None: ...


# resolve(executor reference) -> (ExecutorClient, requests auth); raises FlowkerError.
ExecutorResolver = Callable[[str], tuple]


class StepFailure(Exception):
    def __init__(self, message: str, *, code: str | None = None, output: Any = None, call: CallResult | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.output = output
        self.call = call


class Engine:
    def __init__(
        self,
        plan: WorkflowPlan,
        *,
        execution_id: str,
        input_data: Any,
        deadline: float,
        resolve_executor: ExecutorResolver,
        sink: StepSink,
        scrub_text: Callable[[str], str] = str,
        timeout_seconds: float | None = None,
        expression_cpu_seconds: float = EXPRESSION_CPU_SECONDS,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        expression_sandbox: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        tracing: Any = NO_TRACING,
        seed: dict[str, RecordedStep] | None = None,
    ):
        self.plan = plan
        self.seed = seed or {}
        self.monotonic = monotonic  # the deadline's clock (virtual under `flowker test`)
        self.execution_id = execution_id
        self.input_data = input_data if input_data is not None else {}
        self.deadline = deadline
        self.timeout_seconds = timeout_seconds
        self.resolve_executor = resolve_executor
        self.sink = sink
        self.tracing = tracing  # a flowker.step span around each node that runs
        self.scrub = scrub_text
        self.outputs: dict[str, Any] = {}
        self.status: dict[str, str] = {}
        self.branch: dict[str, bool] = {}
        self.edges_taken: list[EdgePlan] = []  # in the order they were found taken (coverage)
        self.final_output: Any = None
        self.final_output_set = False
        self.max_output_bytes = max_output_bytes
        self.variables = Variables(
            {
                "workflow": self.input_data,
                "nodes": self.outputs,
                "execution": {"id": execution_id, "workflowId": plan.workflow_id},
            },
            EvaluationBudget(
                expression_cpu_seconds, sandbox=expression_sandbox, deadline=deadline, max_result_bytes=max_output_bytes
            ),
        )

    def run(self) -> RunOutcome:
        outcome = RunOutcome(status=COMPLETED)
        for node in self.plan.nodes:
            recorded = self.seed.get(node.id)
            if recorded is not None:
                record = self._reused(node, recorded)
            elif outcome.status == FAILED:
                record = self._skipped(node, f"not run: step {outcome.failed_node!r} failed")
            else:
                record = self._settle(node)
            self.status[node.id] = record.status
            outcome.steps.append(record)
            if record.status == FAILED and outcome.status != FAILED:
                outcome.status = FAILED
                outcome.failed_node = node.id
                outcome.error_message = f"step {node.id!r} failed: {record.error}"
            if not record.reused:
                self.sink.step_finished(record)
        if outcome.status == COMPLETED:
            outcome.final_output = self.final_output if self.final_output_set else dict(self.outputs)
            size = output_size(outcome.final_output, self.max_output_bytes)
            if size > self.max_output_bytes:
                outcome.status, outcome.final_output = FAILED, None
                outcome.error_message = (
                    f"{OutputTooLargeError.code}: the final output (every node's output, as no set_output action "
                    f"ran) is {size} bytes, more than the cap of {self.max_output_bytes} (FLOWKER_MAX_OUTPUT_BYTES)"
                )
        return outcome

    def _capped(self, value: Any, what: str) -> Any:
        """``value``, or OutputTooLargeError when its JSON is larger than the cap."""
        size = output_size(value, self.max_output_bytes)
        if size > self.max_output_bytes:
            raise OutputTooLargeError(
                f"{what} is {size} bytes, more than the cap of {self.max_output_bytes} (FLOWKER_MAX_OUTPUT_BYTES)"
            )
        return value

    # -- one node -------------------------------------------------------------------

    def _settle(self, node: NodePlan) -> StepRecord:
        if node.id != self.plan.trigger_id:
            try:
                taken_edges = [edge for edge in node.incoming if self._taken(edge)]
            except StepFailure as failure:
                now = utcnow()
                return StepRecord(node, FAILED, now, now, error=failure.message, error_code=failure.code)
            self.edges_taken.extend(taken_edges)
            if not taken_edges:
                return self._skipped(node, "no incoming edge was taken")
        self.sink.step_started(node)
        started_at, started = utcnow(), self.monotonic()
        record = StepRecord(node, COMPLETED, started_at, started_at)
        try:
            if self.monotonic() >= self.deadline:
                limit = f" ({self.timeout_seconds:g} s)" if self.timeout_seconds is not None else ""
                raise StepFailure(f"the execution deadline{limit} passed before this step", code=DeadlineExceeded.code)
            with self.tracing.step(node.id, node.type, self.plan.name, self.execution_id):
                record.output = self._capped(self._execute(node, record), f"the output of node {node.id!r}")
            self.outputs[node.id] = record.output
        except StepFailure as failure:
            record.status, record.error, record.error_code = FAILED, self.scrub(failure.message), failure.code
            record.output = failure.output
            if output_size(record.output, self.max_output_bytes) > self.max_output_bytes:
                record.output = None  # the failure is on record; a huge output is not kept
            record.call = failure.call or record.call
        except ExpressionError as exc:
            record.status, record.error, record.error_code = (
                FAILED,
                self.scrub(f"node {node.id!r}: {exc.message}"),
                exc.code,
            )
        except FlowkerError as exc:
            record.status, record.error, record.error_code = FAILED, self.scrub(exc.message), exc.code
        except Exception as exc:  # noqa: BLE001 - a plugin bug fails the step, not the process
            logger.exception("internal error in step %s of execution %s", node.id, self.execution_id)
            record.status, record.error = FAILED, f"internal error in node {node.id!r}: {type(exc).__name__}"
            record.error_code = ErrorCode.INTERNAL
        record.completed_at = utcnow()
        record.duration_ms = (self.monotonic() - started) * 1000.0
        return record

    def _reused(self, node: NodePlan, recorded: RecordedStep) -> StepRecord:
        """The recorded step settles the node as it did the first time: its output feeds
        later expressions, a conditional's result picks the branch again."""
        now = utcnow()
        record = StepRecord(
            node,
            recorded.status,
            now,
            now,
            duration_ms=recorded.duration_ms,
            output=recorded.output,
            error=recorded.error,
            reused=True,
        )
        if recorded.status != COMPLETED:
            return record
        self.outputs[node.id] = recorded.output
        if node.type == "conditional":
            self.branch[node.id] = recorded.output["result"]  # checked by flowker.runner.resume
        if recorded.sets_final_output:
            self.final_output, self.final_output_set = recorded.final_output, True
        return record

    def _skipped(self, node: NodePlan, reason: str) -> StepRecord:
        now = utcnow()
        return StepRecord(node, SKIPPED, now, now, reason=reason)

    def _taken(self, edge: EdgePlan) -> bool:
        if self.status.get(edge.source) != COMPLETED:
            return False
        if edge.source_handle is not None and edge.source in self.branch:
            if edge.source_handle != ("true" if self.branch[edge.source] else "false"):
                return False
        if edge.condition is None:
            return True
        try:
            value = edge.condition.evaluate(self.variables)
        except FlowkerError as exc:  # ExpressionError, or its result past the output cap
            raise StepFailure(f"edge {edge.label}: {exc.message}", code=exc.code) from None
        if not isinstance(value, bool):
            raise StepFailure(
                f"edge {edge.label}: condition `{edge.condition.source}` gave {type(value).__name__}, not a boolean",
                code=ExpressionError.code,
            )
        return value

    def _execute(self, node: NodePlan, record: StepRecord) -> Any:
        if node.type == "trigger":
            return self.input_data
        if node.type == "conditional":
            assert node.condition is not None  # every conditional node has one (graph._node_plan)
            record.input = {"condition": node.condition.source}
            value = node.condition.evaluate(self.variables)
            if not isinstance(value, bool):
                raise StepFailure(
                    f"node {node.id!r}: condition `{node.condition.source}` gave {type(value).__name__}, not a boolean",
                    code=ExpressionError.code,
                )
            self.branch[node.id] = value
            return {"result": value}
        if node.type == "action":
            assert node.action_type is not None  # every action node has one (graph._node_plan)
            record.input = {"actionType": node.action_type.name}
            outcome = node.action_type.run(node.action_compiled, self.variables)
            output = jsonable(outcome.output)
            if outcome.failure is not None:
                raise StepFailure(str(outcome.failure), output=output, code=ErrorCode.FAILED_BY_ACTION)
            if outcome.final_output is not None:
                self.final_output, self.final_output_set = jsonable(outcome.final_output), True
                # On record, so a resumed or retried run that reuses this step sets it again.
                record.input["setsFinalOutput"] = True
                if self.final_output != output:
                    record.input["finalOutput"] = self.final_output
            return output
        return self._call_executor(node, record)

    def _call_executor(self, node: NodePlan, record: StepRecord) -> Any:
        plan = node.request
        assert plan is not None  # every executor node has one (graph._node_plan)
        parts = {name: jsonable(value.evaluate(self.variables)) for name, value in plan.parts.items()}
        record.input = {"executor": plan.executor, "endpoint": plan.endpoint}
        self._capped(parts, f"the request of node {node.id!r}")
        record.input.update(parts)
        client, auth = self.resolve_executor(plan.executor)
        request = CallRequest(
            endpoint=plan.endpoint,
            path_params=parts.get("pathParams") or {},
            query=parts.get("query") or {},
            headers=parts.get("headers") or {},
            body=parts.get("body"),
            timeout=plan.timeout,
            idempotency_key=f"{self.execution_id}:{node.id}",
        )
        call = client.call(request, auth=auth, deadline=self.deadline)
        record.call = call
        if not call.ok:
            raise StepFailure(call.error.message, code=call.error.code, output=call.response, call=call)
        response = call.response
        if plan.output is None:
            return response
        self.outputs[node.id] = response  # the mapping reads nodes.<self>
        try:
            return jsonable(plan.output.evaluate(self.variables))
        except FlowkerError as exc:  # ExpressionError, or its result past the output cap
            del self.outputs[node.id]
            raise StepFailure(
                f"node {node.id!r} output mapping: {exc.message}", code=exc.code, output=response, call=call
            ) from None


_ASCII_JSON = json.JSONEncoder(separators=(",", ":"), default=str).encode


def output_size(value: Any, limit: int | None = None) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what a stored output costs).

    With ``limit``, any size up to it may be answered for a value within it: ASCII-only
    JSON (one encoder built once, every step runs this) is never shorter than UTF-8,
    so only a value whose escaped form passes the limit is measured again exactly."""
    if value is None:
        return 0
    size = len(_ASCII_JSON(value))
    if limit is not None and size <= limit:
        return size
    return len(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    )


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of a CEL result: timestamps, durations and bytes become strings."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)
