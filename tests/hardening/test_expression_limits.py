"""Expressions cannot exhaust the server (DESIGN 6): the probes of issue 12, section 2,
through the REST API on SQLite and PostgreSQL, and the output cap.

* seven nested ``all`` (ten million iterations, 6 s of CPU before) and sixteen
  nested doubling ``map`` (64 MiB from 1 KiB, the process died at 22) are refused when
  the workflow is saved, with the column of the macro at fault;
* what the static limits let through is stopped while it runs: a quadratic ``all``
  over a 3,000-element input (4.4 s before) at the CPU budget (FLK-0106), chained
  ``map`` multiplying a string at the memory limit (FLK-0107);
* step, action, executor and final outputs past FLOWKER_MAX_OUTPUT_BYTES fail with
  FLK-0512, and nothing large is stored.
"""

from __future__ import annotations

import json
import time
from itertools import pairwise

import pytest

from flowker.local_server import LocalHTTPServer

# Wall-clock bound for a run whose expression is stopped at a 1 s CPU budget: the budget
# is CPU time, and on a machine shared with other jobs the evaluator gets a fraction of a
# core (the evaluator's start included). The CPU bound below is the one that matters.
RUN_SECONDS_LIMIT = 20.0
# CPU of the serving process for one run (converting and recording a 3,000-element input).
WORKER_CPU_LIMIT = 0.8


def nested_all(depth: int) -> str:
    ten = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    source = " + ".join(f"v{i}" for i in range(depth)) + " >= 0"
    for level in reversed(range(depth)):
        source = f"{ten}.all(v{level}, {source})"
    return source


def nested_doubling_maps(depth: int, terms: int = 2) -> str:
    source = "workflow.s"
    for level in range(depth):
        source = f"[{source}].map(a{level}, {' + '.join([f'a{level}'] * terms)})[0]"
    return f"size({source})"


def body(name: str, output, *, extra_nodes: list | None = None) -> dict:
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}, *(extra_nodes or [])]
    nodes.append({"id": "out", "type": "action", "data": {"actionType": "set_output", "output": output}})
    ids = [node["id"] for node in nodes]
    return {"name": name, "nodes": nodes, "edges": [{"source": a, "target": b} for a, b in pairwise(ids)]}


def transform(node_id: str, values: dict) -> dict:
    return {"id": node_id, "type": "action", "data": {"actionType": "transform", "values": values}}


def create(client, workflow: dict) -> str:
    response = client.simulate_post("/v1/workflows", json=workflow)
    assert response.status_code == 201, response.text
    workflow_id = response.json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    return workflow_id


def run(client, workflow_id: str, input_data) -> tuple[dict, dict, float]:
    """(execution, its results, wall seconds of the run); the run may not have kept this
    process's CPU busy (the expensive evaluations happen elsewhere)."""
    started, cpu_started = time.monotonic(), time.process_time()
    response = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": input_data})
    seconds = time.monotonic() - started
    assert time.process_time() - cpu_started < WORKER_CPU_LIMIT, time.process_time() - cpu_started
    assert response.status_code == 201, response.text
    execution = response.json
    results = client.simulate_get(f"/v1/executions/{execution['executionId']}/results")
    assert results.status_code == 200, results.text
    return execution, results.json, seconds


def failed_step(results: dict) -> dict:
    failed = [step for step in results["stepResults"] if step["status"] == "failed"]
    assert len(failed) == 1, results
    return failed[0]


def audited_error_code(client, execution_id: str) -> str:
    response = client.simulate_get("/v1/audit-events", params={"eventType": "STEP_FAILED", "resourceId": execution_id})
    items = response.json["items"]
    assert len(items) == 1, response.text
    return items[0]["metadata"]["errorCode"]


# ----------------------------------------------------------------------- refused on save


def test_seven_nested_alls_are_refused_with_the_column_of_the_fourth(make_app):
    client = make_app.client()
    source = nested_all(7)
    assert len(source) > 290  # the probe's shape: 298 characters
    response = client.simulate_post("/v1/workflows", json=body("deep", {"ok": f"${{{{ {source} }}}}"}))
    assert response.status_code == 422, response.text
    problem = response.json["details"][0]
    assert "nested at most 3 deep" in problem["message"], problem
    fourth = source.index(".all(", source.index(".all(", source.index(".all(", source.index(".all(") + 1) + 1) + 1)
    assert f"(column {fourth + 2} of the expression)" in problem["message"], (problem, fourth)
    assert problem["path"].endswith("data.output.ok"), problem
    assert client.simulate_get("/v1/workflows").json["items"] == []  # nothing was created


def test_sixteen_nested_doubling_maps_are_refused(make_app):
    client = make_app.client()
    response = client.simulate_post(
        "/v1/workflows", json=body("doubling", {"n": f"${{{{ {nested_doubling_maps(16)} }}}}"})
    )
    assert response.status_code == 422, response.text
    assert "at most 8 comprehensions" in response.json["details"][0]["message"], response.text


# ----------------------------------------------------------------- stopped while running


def test_a_quadratic_all_over_3000_elements_stops_at_the_cpu_budget(make_app):
    client = make_app.client()
    workflow_id = create(client, body("quadratic", {"ok": "${{ workflow.l.all(x, workflow.l.all(y, x + y >= 0)) }}"}))
    execution, results, seconds = run(client, workflow_id, {"l": list(range(3000))})
    assert execution["status"] == "failed", execution
    assert seconds < RUN_SECONDS_LIMIT, seconds
    step = failed_step(results)
    assert step["nodeId"] == "out" and "expression budget" in step["errorMessage"], step
    assert audited_error_code(client, execution["executionId"]) == "FLK-0106"
    # The budget is the execution's: a second run gets its own, and a cheap one completes.
    cheap = create(client, body("cheap", {"ok": "${{ workflow.l.all(x, x >= 0) }}"}))
    execution, results, _ = run(client, cheap, {"l": list(range(3000))})
    assert execution["status"] == "completed" and results["finalOutput"] == {"ok": True}, results


def test_chained_maps_multiplying_a_string_stop_at_the_memory_limit(make_app):
    client = make_app.client()
    source = nested_doubling_maps(8, terms=8)  # 8^8 x 1 KiB, within the static limits
    workflow_id = create(client, body("multiplying", {"n": f"${{{{ {source} }}}}"}))
    execution, results, seconds = run(client, workflow_id, {"s": "x" * 1024})
    assert execution["status"] == "failed", execution
    assert seconds < RUN_SECONDS_LIMIT, seconds
    step = failed_step(results)
    assert "256 MiB of memory" in step["errorMessage"], step
    assert audited_error_code(client, execution["executionId"]) == "FLK-0107"
    assert len(json.dumps(results)) < 64 * 1024  # nothing large stored or answered


def test_a_string_multiplied_past_the_output_cap_is_not_copied_back(make_app):
    client = make_app.client(max_output_bytes="65536")
    source = nested_doubling_maps(4, terms=4)  # 4^4 x 1 KiB = 256 KiB, under the memory limit
    workflow_id = create(client, body("large", {"s": f"${{{{ {source.removeprefix('size(')[:-1]} }}}}"}))
    execution, results, _ = run(client, workflow_id, {"s": "x" * 1024})
    assert execution["status"] == "failed", execution
    step = failed_step(results)
    assert "output cap of 65536 bytes" in step["errorMessage"] and "output" not in step, step
    assert audited_error_code(client, execution["executionId"]) == "FLK-0512"


# ------------------------------------------------------------------------- output caps


def test_the_trigger_output_is_capped_too(make_app):
    client = make_app.client(max_output_bytes="4096")
    workflow_id = create(client, body("input", {"done": True}))
    execution, results, _ = run(client, workflow_id, {"s": "v" * 5000})
    assert execution["status"] == "failed" and failed_step(results)["nodeId"] == "start", results
    assert audited_error_code(client, execution["executionId"]) == "FLK-0512"


def test_an_action_output_past_the_cap_fails_its_step(make_app):
    client = make_app.client(max_output_bytes="4096")
    # Plain concatenations run in the worker; the step's output is capped after.
    workflow_id = create(
        client,
        body("wide", {"done": True}, extra_nodes=[transform("wide", {"text": "${{ workflow.s + workflow.s }}"})]),
    )
    execution, results, _ = run(client, workflow_id, {"s": "y" * 3000})
    assert execution["status"] == "failed", execution
    step = failed_step(results)
    assert step["nodeId"] == "wide" and "output" not in step, step
    assert "more than the cap of 4096" in step["errorMessage"], step
    assert audited_error_code(client, execution["executionId"]) == "FLK-0512"
    assert [s["status"] for s in results["stepResults"]] == ["completed", "failed", "skipped"]


def test_a_final_output_past_the_cap_fails_the_set_output_step(make_app):
    client = make_app.client(max_output_bytes="4096")
    workflow_id = create(client, body("final", {"echo": "${{ workflow.s + workflow.s }}"}))
    execution, results, _ = run(client, workflow_id, {"s": "z" * 2500})
    assert execution["status"] == "failed" and results["finalOutput"] is None, execution
    assert failed_step(results)["nodeId"] == "out"
    assert audited_error_code(client, execution["executionId"]) == "FLK-0512"
    # Under the cap the same workflow completes.
    execution, results, _ = run(client, workflow_id, {"s": "z" * 1500})
    assert execution["status"] == "completed" and results["finalOutput"] == {"echo": "z" * 3000}


def test_an_implicit_final_output_past_the_cap_fails_the_run(make_app):
    """Without set_output the final output is every node's output: each step is under
    the cap, all of them together are not."""
    client = make_app.client(max_output_bytes="4096")
    nodes = [
        {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
        transform("a", {"v": "${{ workflow.s }}"}),
        transform("b", {"v": "${{ workflow.s }}"}),
    ]
    workflow = {
        "name": "implicit",
        "nodes": nodes,
        "edges": [{"source": "start", "target": "a"}, {"source": "a", "target": "b"}],
    }
    workflow_id = create(client, workflow)
    execution, results, _ = run(client, workflow_id, {"s": "w" * 1500})
    assert execution["status"] == "failed" and results["finalOutput"] is None, execution
    assert "FLK-0512" in execution["errorMessage"] and "final output" in execution["errorMessage"], execution


@pytest.fixture
def large_answer():
    """A service on 127.0.0.1 whose answer is 8 KiB of JSON."""
    with LocalHTTPServer(lambda request: (200, {}, {"blob": "b" * 8192})) as server:
        yield server


def test_an_executor_output_past_the_cap_fails_its_step(make_app, large_answer):
    client = make_app.client(max_output_bytes="4096")
    executor = {
        "name": "big",
        "baseUrl": large_answer.url,
        "endpoints": [{"name": "get", "path": "/", "method": "GET"}],
        "authentication": {"type": "none"},
    }
    assert client.simulate_post("/v1/executors", json=executor).status_code == 201
    workflow_id = create(
        client,
        body(
            "executor",
            {"done": True},
            extra_nodes=[{"id": "call", "type": "executor", "data": {"executor": "big", "endpoint": "get"}}],
        ),
    )
    execution, results, _ = run(client, workflow_id, {})
    assert execution["status"] == "failed", execution
    step = failed_step(results)
    assert step["nodeId"] == "call" and "output" not in step and "more than the cap of 4096" in step["errorMessage"]
    assert audited_error_code(client, execution["executionId"]) == "FLK-0512"
