"""Malformed spec bodies get a 4xx, never a 500: every position of a valid body is
replaced by arbitrary JSON (Hypothesis), posted, and - when accepted - activated."""

from __future__ import annotations

import copy

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_helpers import API_KEY, executor_body, make_settings, workflow_body

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


def replaced(body, path, new):
    if not path:
        return new
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return body


WORKFLOW = workflow_body(verify_token="fuzz-token-123456")
WORKFLOW_PATHS = list(paths(WORKFLOW))
EXECUTOR = executor_body("http://127.0.0.1:9")
EXECUTOR_PATHS = list(paths(EXECUTOR))


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, registry):
    from flowker.api.app import create_app
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"
    database = bind_database(url)
    upgrade(database)
    app = create_app(make_settings(url), registry=registry, database=database)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    assert client.simulate_post("/v1/executors", json=executor_body("http://127.0.0.1:9")).status_code == 201
    yield client
    app.state.execution_service.close()
    database.close()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(index=st.integers(0, len(WORKFLOW_PATHS) - 1), new=JSON, kind=st.sampled_from([None, "Workflow"]))
def test_mangled_workflows_never_cause_a_server_error(fuzz_client, index, new, kind):
    body = replaced(WORKFLOW, WORKFLOW_PATHS[index], new)
    if kind and isinstance(body, dict):
        body = {**body, "kind": kind}
    response = fuzz_client.simulate_post("/v1/workflows", json=body)
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        workflow_id = response.json["workflowId"]
        assert fuzz_client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code < 500
        fuzz_client.simulate_post(f"/v1/workflows/{workflow_id}/deactivate")
        fuzz_client.simulate_post(f"/v1/workflows/{workflow_id}/draft")
        assert fuzz_client.simulate_delete(f"/v1/workflows/{workflow_id}").status_code == 204


@FUZZ
@given(index=st.integers(0, len(EXECUTOR_PATHS) - 1), new=JSON)
def test_mangled_executors_never_cause_a_server_error(fuzz_client, index, new):
    body = replaced(EXECUTOR, EXECUTOR_PATHS[index], new)
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        body["name"] = body["name"] + "-fuzz"
    response = fuzz_client.simulate_post("/v1/executors", json=body)
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        executor_id = response.json["id"]
        patched = fuzz_client.simulate_patch(
            f"/v1/executors/{executor_id}", json={"metadata": new} if new is not None else {}
        )
        assert patched.status_code < 500, patched.text
        assert fuzz_client.simulate_delete(f"/v1/executors/{executor_id}").status_code == 204
