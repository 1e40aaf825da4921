"""JSON that parses but cannot be honoured is a 400 before anything is stored: lone
surrogates (``"\\ud800"``), numbers that are not finite (``1e400``, ``NaN``), and
duplicate keys (YAML refuses them; JSON now does too, naming the key). Every path a body
takes: spec bodies (JSON and YAML), synchronous and asynchronous run input, webhooks."""

from __future__ import annotations

import json

import pytest

WEBHOOK = "/edges"


def workflow(name: str, trigger: dict, **extra) -> dict:
    return {
        "name": name,
        **extra,
        "nodes": [
            {"id": "start", "type": "trigger", "data": trigger},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"a": 1}}},
        ],
        "edges": [{"source": "start", "target": "out"}],
    }


EXECUTOR = {
    "name": "ledger",
    "baseUrl": "https://ledger.example.com",
    "endpoints": [{"name": "echo", "path": "/echo", "method": "POST"}],
    "authentication": {"type": "bearer", "config": {"token": "ledger-token-123456"}},
}


@pytest.fixture
def world(make_app):
    """A client, an active manual workflow and an active webhook workflow."""
    client = make_app.client()
    ids = []
    for name, trigger in (
        ("manual", {"triggerType": "manual"}),
        ("hook", {"triggerType": "webhook", "path": WEBHOOK, "method": "POST"}),
    ):
        created = client.simulate_post("/v1/workflows", json=workflow(name, trigger))
        assert created.status_code == 201, created.text
        ids.append(created.json["workflowId"])
        assert client.simulate_post(f"/v1/workflows/{ids[-1]}/activate").status_code == 200
    return client, ids[0]


def send(client, method: str, path: str, text: str, **headers):
    return client.simulate_request(
        method, path, body=text.encode(), headers={"Content-Type": "application/json", **headers}
    )


def bodies(workflow_id: str, fragment: str) -> dict:
    """Where ``fragment`` (JSON text of an object member value) can go: (method, path, text, headers)."""
    run = f"/v1/workflows/{workflow_id}/executions"
    return {
        "executor name": (
            "POST",
            "/v1/executors",
            json.dumps({**EXECUTOR, "name": "@@"}).replace('"@@"', fragment),
            {},
        ),
        "workflow node data": (
            "POST",
            "/v1/workflows",
            json.dumps(workflow("n", {"triggerType": "manual"}, metadata={"v": "@@"})).replace('"@@"', fragment),
            {},
        ),
        "sync inputData": ("POST", run, f'{{"inputData": {{"v": {fragment}}}}}', {}),
        "async inputData": ("POST", run, f'{{"inputData": {{"v": {fragment}}}}}', {"Prefer": "respond-async"}),
        "webhook body": ("POST", "/v1/webhooks" + WEBHOOK, f'{{"v": {fragment}}}', {}),
    }


def assert_nothing_stored(client) -> None:
    assert client.simulate_get("/v1/executions").json["items"] == []
    assert client.simulate_get("/v1/executors").json["items"] == []
    assert len(client.simulate_get("/v1/workflows").json["items"]) == 2


@pytest.mark.parametrize("fragment", ['"\\ud800"', '"a\\udfffb"', '{"\\ud83d": 1}', '["x", "\\ud800\\u0041"]'])
def test_lone_surrogates_are_a_400_everywhere(world, fragment):
    client, workflow_id = world
    for where, (method, path, text, headers) in bodies(workflow_id, fragment).items():
        response = send(client, method, path, text, **headers)
        assert response.status_code == 400, (where, response.status_code, response.text[:300])
        assert response.json["code"] == "FLK-0001" and "lone surrogate" in response.json["message"], where
    assert_nothing_stored(client)


def test_a_lone_surrogate_in_a_yaml_spec_is_refused(world):
    client, _ = world
    yaml = 'name: "e\\ud800"\nbaseUrl: https://ledger.example.com\nendpoints: []\nauthentication: {type: none}\n'
    response = client.simulate_post("/v1/executors", body=yaml, headers={"Content-Type": "application/yaml"})
    # The YAML reader itself refuses the escape, with its line and column.
    assert response.status_code == 422 and response.json["details"][0]["line"] == 1, response.text[:300]
    assert "escape" in response.json["message"]
    assert_nothing_stored(client)


@pytest.mark.parametrize("fragment", ["1e400", "-1e400", "1E+309", "NaN", "Infinity", "-Infinity"])
def test_numbers_that_are_not_finite_are_a_400_everywhere(world, fragment):
    client, workflow_id = world
    for where, (method, path, text, headers) in bodies(workflow_id, fragment).items():
        response = send(client, method, path, text, **headers)
        assert response.status_code == 400, (where, response.status_code, response.text[:300])
        message = response.json["message"]
        assert "too large" in message or "not a JSON number" in message, (where, message)
    assert_nothing_stored(client)


def test_the_largest_finite_numbers_are_accepted_and_come_back_as_json(world):
    client, workflow_id = world
    response = send(
        client,
        "POST",
        f"/v1/workflows/{workflow_id}/executions",
        '{"inputData": {"v": 1.7976931348623157e308, "w": -1e308, "i": 123456789012345678901234567890}}',
    )
    assert response.status_code == 201, response.text[:300]
    results = client.simulate_get(f"/v1/executions/{response.json['executionId']}/results")
    assert results.status_code == 200
    json.loads(results.text, parse_constant=lambda name: pytest.fail(f"{name} in the results"))


@pytest.mark.parametrize(
    "fragment,key",
    [
        ('{"a": 1, "b": 2, "a": 3}', "a"),
        ('{"x": {"k\\u00e9": 1, "k\\u00e9": 1}}', "k\u00e9"),
        ('{"\\ud800": 1, "\\ud800": 2}', "\ud800"),
    ],
)
def test_duplicate_keys_are_a_400_naming_the_key(world, fragment, key):
    client, workflow_id = world
    for where, (method, path, text, headers) in bodies(workflow_id, fragment).items():
        response = send(client, method, path, text, **headers)
        assert response.status_code == 400, (where, response.status_code, response.text[:300])
        message = response.json["message"]
        assert "appears more than once" in message and json.dumps(key).strip('"') in message, (where, message)
    # At the top level of a body too.
    response = send(client, "POST", "/v1/executors", '{"name": "a", "name": "b"}')
    assert response.status_code == 400 and '"name" appears more than once' in response.json["message"]
    assert_nothing_stored(client)
