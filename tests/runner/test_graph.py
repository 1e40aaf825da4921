"""Graph semantics (DESIGN 4): order, taken edges, skips, joins, failures, refusals."""

from __future__ import annotations

import json

import pytest

from flowker.audit.chain import SYSTEM_ACTOR
from flowker.errors import SpecError
from flowker.runner.graph import compile_plan
from flowker.storage.models import AuditEntry, StepResult

from runner_helpers import store_workflow


def trigger(node_id="start"):
    return {"id": node_id, "type": "trigger", "data": {"triggerType": "manual"}}


def transform(node_id, **values):
    return {"id": node_id, "type": "action", "data": {"actionType": "transform", "values": values}}


def set_output(node_id, output):
    return {"id": node_id, "type": "action", "data": {"actionType": "set_output", "output": output}}


def conditional(node_id, condition):
    return {"id": node_id, "type": "conditional", "data": {"condition": condition}}


def edge(source, target, **extra):
    return {"source": source, "target": target, **extra}


def run_workflow(service, nodes, edges, input_data=None, name="graph-test"):
    workflow = store_workflow({"name": name, "nodes": nodes, "edges": edges})
    started = service.start(workflow.id, input_data or {}, actor=SYSTEM_ACTOR)
    execution = service.run(started.execution.id)
    steps = {s.node_id: s for s in StepResult.select().where(StepResult.execution == execution.id)}
    return execution, steps


def statuses(steps):
    return {node_id: step.status for node_id, step in steps.items()}


# -- compile-time refusals ---------------------------------------------------------------


def test_cycle_is_rejected_before_running(registry):
    spec = {
        "name": "cyclic",
        "nodes": [trigger(), transform("a", x="${{ 1 }}"), transform("b", y="${{ 2 }}")],
        "edges": [edge("start", "a"), edge("a", "b"), edge("b", "a")],
    }
    with pytest.raises(SpecError) as caught:
        compile_plan(spec, registry)
    assert "cycle" in caught.value.message and "a" in caught.value.message


def test_second_trigger_is_rejected(registry):
    spec = {
        "name": "two",
        "nodes": [trigger("t1"), trigger("t2"), transform("a", x="${{ 1 }}")],
        "edges": [edge("t1", "a"), edge("t2", "a")],
    }
    with pytest.raises(SpecError, match="exactly one trigger"):
        compile_plan(spec, registry)


def test_bad_expression_and_unknown_action_are_rejected(registry):
    spec = {
        "name": "bad",
        "nodes": [
            trigger(),
            conditional("c", "workflow.x <"),
            {"id": "z", "type": "action", "data": {"actionType": "nope"}},
        ],
        "edges": [edge("start", "c"), edge("c", "z", sourceHandle="true")],
    }
    with pytest.raises(SpecError) as caught:
        compile_plan(spec, registry)
    messages = [p.message for p in caught.value.problems]
    assert any("'c'" in m for m in messages) and any("nope" in m for m in messages)


def test_service_refuses_to_start_a_cyclic_workflow(service):
    from flowker.storage.models import Execution

    workflow = store_workflow(
        {
            "name": "cyc",
            "nodes": [trigger(), transform("a", x="${{ 1 }}")],
            "edges": [edge("start", "a"), edge("a", "a")],
        }
    )
    with pytest.raises(SpecError):
        service.start(workflow.id, {}, actor=SYSTEM_ACTOR)
    assert Execution.select().count() == 0


def test_topological_order_is_deterministic(registry):
    spec = {
        "name": "order",
        "nodes": [
            transform("late", x="${{ 1 }}"),
            trigger(),
            transform("b", x="${{ 1 }}"),
            transform("a", x="${{ 1 }}"),
        ],
        "edges": [edge("start", "b"), edge("start", "a"), edge("a", "late"), edge("b", "late")],
    }
    plan = compile_plan(spec, registry)
    assert [n.id for n in plan.nodes] == ["start", "b", "a", "late"]
    assert [n.step_number for n in plan.nodes] == [1, 2, 3, 4]


# -- run-time semantics ---------------------------------------------------------------------


def test_diamond_runs_the_join_once(service):
    nodes = [
        trigger(),
        transform("left", v="${{ workflow.n + 1 }}"),
        transform("right", v="${{ workflow.n * 10 }}"),
        transform("join", total="${{ nodes.left.v + nodes.right.v }}"),
        set_output("out", {"total": "${{ nodes.join.total }}"}),
    ]
    edges = [
        edge("start", "left"),
        edge("start", "right"),
        edge("left", "join"),
        edge("right", "join"),
        edge("join", "out"),
    ]
    execution, steps = run_workflow(service, nodes, edges, {"n": 2})
    assert execution.status == "completed"
    assert execution.final_output == {"total": 23}
    assert StepResult.select().where(StepResult.node_id == "join").count() == 1
    assert set(statuses(steps).values()) == {"completed"}


def test_false_branch_is_skipped_and_its_descendants_too(service):
    nodes = [
        trigger(),
        conditional("check", "workflow.amount < 100"),
        set_output("small", {"size": "small"}),
        transform("big", size="big"),
        set_output("big-out", {"size": "${{ nodes.big.size }}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "small", sourceHandle="true"),
        edge("check", "big", sourceHandle="false"),
        edge("big", "big-out"),
    ]
    execution, steps = run_workflow(service, nodes, edges, {"amount": 5})
    assert execution.status == "completed"
    assert execution.final_output == {"size": "small"}
    assert statuses(steps) == {
        "start": "completed",
        "check": "completed",
        "small": "completed",
        "big": "skipped",
        "big-out": "skipped",
    }
    assert steps["check"].output == {"result": True}
    assert steps["big"].attempts == 0


def test_join_after_a_conditional_runs_when_one_branch_ran(service):
    nodes = [
        trigger(),
        conditional("check", "workflow.express"),
        transform("fast", mode="express"),
        transform("slow", mode="standard"),
        set_output("done", {"mode": "${{ has(nodes.fast) ? nodes.fast.mode : nodes.slow.mode }}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "fast", sourceHandle="true"),
        edge("check", "slow", sourceHandle="false"),
        edge("fast", "done"),
        edge("slow", "done"),
    ]
    execution, steps = run_workflow(service, nodes, edges, {"express": False})
    assert execution.final_output == {"mode": "standard"}
    assert statuses(steps)["fast"] == "skipped" and statuses(steps)["done"] == "completed"


def test_edge_conditions_gate_their_target(service):
    nodes = [
        trigger(),
        transform("high", level="high"),
        transform("low", level="low"),
        transform("always", level="any"),
    ]
    edges = [
        edge("start", "high", condition="workflow.score >= 50"),
        edge("start", "low", condition="workflow.score < 50"),
        edge("start", "always"),
    ]
    execution, steps = run_workflow(service, nodes, edges, {"score": 70})
    assert statuses(steps) == {"start": "completed", "high": "completed", "low": "skipped", "always": "completed"}
    # Without set_output the final output is the map of node outputs.
    assert execution.final_output == {"start": {"score": 70}, "high": {"level": "high"}, "always": {"level": "any"}}


def test_first_failure_fails_the_run_and_skips_the_rest(service):
    nodes = [
        trigger(),
        transform("a", v="${{ 1 }}"),
        {"id": "stop", "type": "action", "data": {"actionType": "fail", "message": "no: ${{ workflow.why }}"}},
        transform("after", v="${{ 2 }}"),
        transform("parallel", v="${{ 3 }}"),
    ]
    edges = [edge("start", "a"), edge("a", "stop"), edge("stop", "after"), edge("start", "parallel")]
    execution, steps = run_workflow(service, nodes, edges, {"why": "limit"})
    assert execution.status == "failed"
    assert "stop" in execution.error_message and "no: limit" in execution.error_message
    assert execution.final_output is None
    assert steps["stop"].status == "failed" and steps["stop"].error_message == "no: limit"
    # The fail action has its own code, not the invalid execution body's FLK-0510.
    failed = [
        json.loads(event.canonical)
        for event in AuditEntry.select().where(
            (AuditEntry.event_type == "STEP_FAILED") & (AuditEntry.resource_id == execution.id)
        )
    ]
    assert len(failed) == 1 and '"errorCode":"FLK-0513"' in json.dumps(failed[0], separators=(",", ":")), failed
    # Nodes after the failure in topological order are skipped, whatever branch they are on.
    order = sorted(steps.values(), key=lambda s: s.step_number)
    failed_at = next(s.step_number for s in order if s.status == "failed")
    assert all(s.status == "skipped" for s in order if s.step_number > failed_at)
    assert execution.current_step == execution.total_steps == 5


def test_runtime_expression_error_names_the_node_and_the_expression(service):
    nodes = [trigger(), transform("calc", v="${{ workflow.missing.deep }}")]
    execution, steps = run_workflow(service, nodes, [edge("start", "calc")], {"present": 1})
    assert execution.status == "failed"
    message = steps["calc"].error_message
    assert "'calc'" in message and "workflow.missing.deep" in message


def test_non_boolean_condition_fails_the_step(service):
    nodes = [trigger(), conditional("c", "workflow.n"), transform("x", v="${{ 1 }}"), transform("y", v="${{ 1 }}")]
    edges = [edge("start", "c"), edge("c", "x", sourceHandle="true"), edge("c", "y", sourceHandle="false")]
    execution, steps = run_workflow(service, nodes, edges, {"n": 3})
    assert execution.status == "failed"
    assert "not a boolean" in steps["c"].error_message


def test_edge_condition_error_fails_the_target_step(service):
    nodes = [trigger(), transform("x", v="${{ 1 }}")]
    execution, steps = run_workflow(service, nodes, [edge("start", "x", condition="workflow.nope > 1")], {})
    assert execution.status == "failed"
    assert "edge start -> x" in steps["x"].error_message and "workflow.nope > 1" in steps["x"].error_message


def test_execution_variables_are_available(service):
    nodes = [
        trigger(),
        set_output(
            "out",
            {
                "id": "${{ execution.id }}",
                "wf": "${{ execution.workflowId }}",
                "text": "n=${{ workflow.n }} ok=${{ workflow.ok }}",
            },
        ),
    ]
    execution, _ = run_workflow(service, nodes, [edge("start", "out")], {"n": 4, "ok": True})
    assert execution.final_output == {"id": execution.id, "wf": execution.workflow_id, "text": "n=4 ok=true"}


def test_plans_are_compiled_once_per_version(service):
    nodes = [trigger(), set_output("out", {"v": "${{ workflow.v }}"})]
    workflow = store_workflow({"name": "cached", "nodes": nodes, "edges": [edge("start", "out")]})
    before = service.plans.compiled
    for value in range(3):
        started = service.start(workflow.id, {"v": value}, actor=SYSTEM_ACTOR)
        assert service.run(started.execution.id).final_output == {"v": value}
    assert service.plans.compiled - before == 1
