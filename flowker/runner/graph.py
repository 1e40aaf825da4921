"""A workflow spec compiled into an execution plan, once per workflow version.

The plan holds the nodes in topological order (ties broken by their order in the
spec, so runs are deterministic), each node's incoming edges, and every expression
compiled: conditions, edge conditions, executor request templates and action configs.
Structural problems that make a run meaningless (duplicate ids, unknown node types,
dangling edges, not exactly one trigger, edges into the trigger, cycles) and
expressions that do not compile are refused here, before anything runs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from flowker.actions import ActionType, action_config
from flowker.errors import FlowkerError, SpecError
from flowker.expressions import CompiledExpression, CompiledValue, ExpressionError, compile_condition, compile_value
from flowker.validation.input_schema import InputValidator, trigger_input_schema
from flowker.validation.problems import Problem

NODE_TYPES = ("trigger", "executor", "conditional", "action")
EXECUTOR_REQUEST_PARTS = ("body", "pathParams", "query", "headers")
ON_INTERRUPT = ("resume", "fail")
TRIGGER_MODES = ("sync", "async")


@dataclass(frozen=True)
class EdgePlan:
    index: int
    source: str
    target: str
    source_handle: str | None
    condition: CompiledExpression | None

    @property
    def label(self) -> str:
        return f"{self.source} -> {self.target}"


@dataclass(frozen=True)
class ExecutorRequestPlan:
    """An executor node's request: names resolved at run time, templates compiled now."""

    executor: str  # an executor name or id
    endpoint: str
    parts: dict  # body/pathParams/query/headers -> CompiledValue (absent when not given)
    output: CompiledValue | None
    timeout: float | None


@dataclass(frozen=True)
class NodePlan:
    id: str
    name: str
    type: str
    step_number: int
    incoming: tuple[EdgePlan, ...]
    condition: CompiledExpression | None = None  # conditional nodes
    action_type: ActionType | None = None  # action nodes
    action_compiled: Any = None
    request: ExecutorRequestPlan | None = None  # executor nodes


@dataclass(frozen=True)
class WorkflowPlan:
    workflow_id: str
    version: int
    name: str
    nodes: tuple[NodePlan, ...]  # topological order
    trigger_id: str
    by_id: dict = field(repr=False, compare=False, default_factory=dict)
    # The trigger's inputSchema, compiled (None: any input object is accepted).
    input_validator: InputValidator | None = field(repr=False, compare=False, default=None)
    # At most this many running executions of the workflow across every worker (None: no limit).
    concurrency: int | None = None
    # A run whose process died: "resume" it on another worker, or "fail" it as interrupted.
    on_interrupt: str = "resume"
    # The trigger's `mode`: "async" webhooks queue the run and answer 202 at once.
    trigger_mode: str = "sync"

    @property
    def total_steps(self) -> int:
        return len(self.nodes)


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[Problem] = []

    def add(self, path: tuple, message: str) -> None:
        self.items.append(Problem(self.source, None, None, path, message))


def compile_plan(spec: dict, registry, *, workflow_id: str = "", version: int = 0) -> WorkflowPlan:
    """Compile a workflow body (the REST body, ``kind`` optional); raises SpecError."""
    name = spec["name"] if isinstance(spec.get("name"), str) else workflow_id
    problems = _Problems(f"workflow {name}")
    nodes = [n for n in spec.get("nodes") or [] if isinstance(n, dict)]
    edges = [e for e in spec.get("edges") or [] if isinstance(e, dict)]

    index_of = _node_index(nodes, problems)
    edge_plans = _edges(edges, index_of, problems)
    triggers = [node["id"] for node in nodes if node.get("type") == "trigger" and node.get("id") in index_of]
    if len(triggers) != 1:
        problems.add(
            ("nodes",),
            f"a workflow needs exactly one trigger node; this one has {len(triggers)}"
            + (f" ({', '.join(triggers)})" if triggers else ""),
        )
    for edge in edge_plans:
        if edge.target in triggers:
            problems.add(("edges", edge.index, "target"), f"edge {edge.label} goes into the trigger")
    order = _topological_order(nodes, index_of, edge_plans, problems)
    input_validator = _input_validator(spec, problems)
    concurrency, on_interrupt = _run_options(spec, problems)
    trigger_mode = _trigger_mode(nodes, triggers, index_of, problems)
    if problems.items:
        raise SpecError(problems.items)

    incoming: dict[str, list[EdgePlan]] = {node_id: [] for node_id in index_of}
    for edge in edge_plans:
        incoming[edge.target].append(edge)
    plans = []
    for step_number, node_id in enumerate(order, start=1):
        node = nodes[index_of[node_id]]
        plan = _node_plan(node, index_of[node_id], step_number, tuple(incoming[node_id]), registry, problems)
        if plan is not None:
            plans.append(plan)
    if problems.items:
        raise SpecError(problems.items)
    return WorkflowPlan(
        workflow_id=workflow_id,
        version=version,
        name=name,
        nodes=tuple(plans),
        trigger_id=triggers[0],
        by_id={plan.id: plan for plan in plans},
        input_validator=input_validator,
        concurrency=concurrency,
        on_interrupt=on_interrupt,
        trigger_mode=trigger_mode,
    )


def _run_options(spec: dict, problems: _Problems) -> tuple[int | None, str]:
    """The top-level ``concurrency`` and ``onInterrupt`` (the schema checks them too; a
    stored spec that predates them has neither)."""
    concurrency = spec.get("concurrency")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        problems.add(("concurrency",), "concurrency must be an integer of at least 1")
        concurrency = None
    on_interrupt = spec.get("onInterrupt", "resume")
    if on_interrupt not in ON_INTERRUPT:
        problems.add(("onInterrupt",), f"onInterrupt must be one of {', '.join(ON_INTERRUPT)}")
        on_interrupt = "resume"
    return concurrency, on_interrupt


def _trigger_mode(nodes: list[dict], triggers: list[str], index_of: dict[str, int], problems: _Problems) -> str:
    if len(triggers) != 1:
        return "sync"
    index = index_of[triggers[0]]
    data = nodes[index].get("data")
    mode = data.get("mode", "sync") if isinstance(data, dict) else "sync"
    if mode not in TRIGGER_MODES:
        problems.add(("nodes", index, "data", "mode"), f"mode must be one of {', '.join(TRIGGER_MODES)}")
        return "sync"
    return mode


def _input_validator(spec: dict, problems: _Problems) -> InputValidator | None:
    found = trigger_input_schema(spec)
    if found is None:
        return None
    index, schema = found
    if not isinstance(schema, dict):
        problems.add(("nodes", index, "data", "inputSchema"), "inputSchema must be an object")
        return None
    try:
        return InputValidator(schema)
    except jsonschema.SchemaError as exc:
        problems.add(("nodes", index, "data", "inputSchema"), f"inputSchema is not a valid JSON Schema: {exc.message}")
        return None


def _node_index(nodes: list[dict], problems: _Problems) -> dict[str, int]:
    index_of: dict[str, int] = {}
    for index, node in enumerate(nodes):
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id:
            problems.add(("nodes", index, "id"), "node has no id")
        elif node_id in index_of:
            problems.add(("nodes", index, "id"), f"duplicate node id {node_id!r}")
        elif node.get("type") not in NODE_TYPES:
            problems.add(("nodes", index, "type"), f"node {node_id!r} has unknown type {node.get('type')!r}")
        else:
            index_of[node_id] = index
    return index_of


def _edges(edges: list[dict], index_of: dict[str, int], problems: _Problems) -> list[EdgePlan]:
    plans = []
    for index, edge in enumerate(edges):
        source, target = edge.get("source"), edge.get("target")
        if source not in index_of or target not in index_of:
            problems.add(("edges", index), f"edge {source!r} -> {target!r} names a node that does not exist")
            continue
        condition = None
        if edge.get("condition") is not None:
            try:
                condition = compile_condition(edge["condition"])
            except ExpressionError as exc:
                problems.add(("edges", index, "condition"), f"edge {source} -> {target}: {exc.message}")
                continue
        handle = edge.get("sourceHandle")
        plans.append(EdgePlan(index, source, target, str(handle) if handle is not None else None, condition))
    return plans


def _topological_order(nodes, index_of, edges: list[EdgePlan], problems: _Problems) -> list[str]:
    """Kahn's algorithm; among ready nodes the one earliest in the spec goes first."""
    indegree = {node_id: 0 for node_id in index_of}
    outgoing: dict[str, list[str]] = {node_id: [] for node_id in index_of}
    for edge in edges:
        indegree[edge.target] += 1
        outgoing[edge.source].append(edge.target)
    ready = [index_of[node_id] for node_id, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node_id = nodes[heapq.heappop(ready)]["id"]
        order.append(node_id)
        for target in outgoing[node_id]:
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(ready, index_of[target])
    if len(order) < len(index_of):
        cyclic = sorted((n for n, d in indegree.items() if d > 0), key=index_of.get)
        problems.add(("edges",), f"the graph has a cycle through {', '.join(cyclic)}")
    return order


def _node_plan(node: dict, index: int, step_number: int, incoming, registry, problems: _Problems) -> NodePlan | None:
    node_id, node_type = node["id"], node["type"]
    data = node["data"] if isinstance(node.get("data"), dict) else {}
    name = node.get("name") if isinstance(node.get("name"), str) and node.get("name") else node_id
    base = dict(id=node_id, name=name, type=node_type, step_number=step_number, incoming=incoming)
    where = ("nodes", index, "data")
    try:
        if node_type == "trigger":
            return NodePlan(**base)
        if node_type == "conditional":
            return NodePlan(**base, condition=compile_condition(data.get("condition", "")))
        if node_type == "action":
            action_type = registry.action_type(data.get("actionType"))
            config = action_config(data)
            config_problems = action_type.validate_config(config)
            for path, message in config_problems:
                problems.add(where + (path,) if path else where, f"node {node_id!r}: {message}")
            if config_problems:
                return None
            return NodePlan(**base, action_type=action_type, action_compiled=action_type.compile(config))
        return NodePlan(**base, request=_request_plan(node_id, data))
    except ExpressionError as exc:
        problems.add(where, f"node {node_id!r}: {exc.message}")
    except FlowkerError as exc:  # an unknown action type
        problems.add(where, f"node {node_id!r}: {exc.message}")
    return None


def _request_plan(node_id: str, data: dict) -> ExecutorRequestPlan:
    executor, endpoint = data.get("executor"), data.get("endpoint")
    if not isinstance(executor, str) or not executor or not isinstance(endpoint, str) or not endpoint:
        raise FlowkerError(f"executor node {node_id!r} needs 'executor' and 'endpoint'")
    parts = {part: compile_value(data[part]) for part in EXECUTOR_REQUEST_PARTS if data.get(part) is not None}
    output = compile_value(data["output"]) if data.get("output") is not None else None
    timeout = data.get("timeout")
    return ExecutorRequestPlan(
        executor=executor,
        endpoint=endpoint,
        parts=parts,
        output=output,
        timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None,
    )
