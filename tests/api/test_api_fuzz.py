"""Property-based fuzzing of every JSON body and every query parameter that ``/openapi.json``
describes, with generators of what JSON libraries disagree on: lone surrogates, NUL,
numbers too large for a float (``1e400``) or an int conversion (5,000 digits), ``NaN``,
duplicate keys, deep nesting; and query strings of arbitrary bytes (``%ED%A0%80`` is an
encoded surrogate). Every answer must be below 500 and valid JSON (no ``Infinity``), and
a run that was accepted must have results that are valid JSON too. Both backends.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote_from_bytes

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_helpers import API_KEY

EXAMPLES = 120
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

HOSTILE_STRINGS = st.sampled_from(
    [
        '"\\ud800"',
        '"a\\udfffb"',
        '"\\udc00\\ud800"',
        '"x\\u0000y"',
        '"\\u0000"',
        '"\\ud83d\\ude00"',
        '""',
        '"\\\\ud800"',
    ]
)
PLAIN_STRINGS = st.text(max_size=12).map(json.dumps)
HOSTILE_NUMBERS = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1E+309",
        "NaN",
        "Infinity",
        "-Infinity",
        "1" + "0" * 5000,
        "9" * 4000,
        "-0",
        "1e-400",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
    ]
)
PLAIN_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr)
)
SCALARS = st.one_of(
    HOSTILE_STRINGS, PLAIN_STRINGS, HOSTILE_NUMBERS, PLAIN_NUMBERS, st.sampled_from(["true", "false", "null"])
)
KEYS = st.one_of(HOSTILE_STRINGS, PLAIN_STRINGS, st.sampled_from(['"name"', '"inputData"', '"a"']))


def _object(members):
    return "{" + ", ".join(f"{key}: {value}" for key, value in members) + "}"


def _with_duplicate(members):
    return _object(members + members[:1]) if members else "{}"


JSON_TEXT = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(KEYS, children), max_size=3).map(_object),
        st.lists(st.tuples(KEYS, children), min_size=1, max_size=3).map(_with_duplicate),
    ),
    max_leaves=10,
)
QUERY_VALUES = st.one_of(st.binary(max_size=12), st.sampled_from([b"\xed\xa0\x80", b"\x00", b"\xff", b"1e400"]))


def strict_json(text: str):
    """json.loads that fails on NaN/Infinity (not JSON) and on duplicate keys."""

    def refuse(name):
        raise AssertionError(f"{name} in a response")

    def pairs(items):
        assert len({key for key, _ in items}) == len(items), "duplicate key in a response"
        return dict(items)

    return json.loads(text, parse_constant=refuse, object_pairs_hook=pairs)


WORKFLOW = {
    "name": "fuzz-run",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {"triggerType": "webhook", "path": "/fuzz", "method": "POST"}},
        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"echo": "{{ workflow }}"}}},
    ],
    "edges": [{"source": "start", "target": "out"}],
}
EXECUTOR = {
    "name": "fuzz-executor",
    "baseUrl": "http://127.0.0.1:9",
    "endpoints": [{"name": "e", "path": "/e", "method": "POST"}],
    "authentication": {"type": "none"},
}


@pytest.fixture
def world(make_app):
    """A client, the served document, and ids that make every path template concrete."""
    client = falcon.testing.TestClient(make_app(), headers={"X-API-Key": API_KEY})
    document = client.simulate_get("/openapi.json").json
    active = client.simulate_post("/v1/workflows", json=WORKFLOW).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{active}/activate").status_code == 200
    draft = client.simulate_post(
        "/v1/workflows",
        json={**WORKFLOW, "name": "fuzz-draft", "nodes": [WORKFLOW["nodes"][1] | {"id": "only"}], "edges": []},
    )
    executor = client.simulate_post("/v1/executors", json=EXECUTOR)
    assert executor.status_code == 201, executor.text
    run = client.simulate_post(f"/v1/workflows/{active}/executions", json={"inputData": {}}).json["executionId"]
    ids = {
        "workflow_id": draft.json.get("workflowId", active),
        "executor_id": executor.json["id"],
        "execution_id": run,
        "event_id": client.simulate_get("/v1/audit-events").json["items"][0]["eventId"],
        "type_name": "bearer",
        "path": "fuzz",
        "name": "fuzz-key",  # an API key name (/v1/api-keys/{name})
    }
    return client, document, ids, active


def operations(document, with_body: bool):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            has_body = "requestBody" in operation
            query = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
            if (with_body and has_body) or (not with_body and query):
                yield method.upper(), path, query


def concrete(path: str, ids: dict, active: str) -> str:
    if path.endswith("/executions") and "{workflow_id}" in path:
        return path.replace("{workflow_id}", active)
    return re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], path)


def check(client, response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.text:
        strict_json(response.text)
    if response.status_code == 201 and "executionId" in (response.json or {}):
        results = client.simulate_get(f"/v1/executions/{response.json['executionId']}/results")
        assert results.status_code < 500
        strict_json(results.text)


def test_every_json_body_refuses_hostile_json_without_a_server_error(world):
    client, document, ids, active = world
    targets = sorted(operations(document, with_body=True))
    assert len(targets) >= 10, targets

    @FUZZ
    @given(
        target=st.sampled_from(targets),
        text=JSON_TEXT,
        wrap=st.sampled_from(["bare", "inputData", "member"]),
        content_type=st.sampled_from(["application/json", "application/merge-patch+json"]),
    )
    def fuzz(target, text, wrap, content_type):
        method, path, _ = target
        body = {
            "bare": text,
            "inputData": f'{{"inputData": {text}}}',
            "member": f'{{"name": "fuzz-x", "metadata": {text}, "description": {text}}}',
        }[wrap]
        response = client.simulate_request(
            method, concrete(path, ids, active), body=body.encode("utf-8"), headers={"Content-Type": content_type}
        )
        check(client, response)

    fuzz()


def test_every_query_parameter_refuses_hostile_values_without_a_server_error(world):
    client, document, ids, active = world
    targets = sorted(operations(document, with_body=False))
    assert len(targets) >= 5, targets

    @FUZZ
    @given(target=st.sampled_from(targets), data=st.data())
    def fuzz(target, data):
        method, path, names = target
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        pairs = [f"{name}={quote_from_bytes(data.draw(QUERY_VALUES))}" for name in chosen]
        response = client.simulate_request(method, concrete(path, ids, active), query_string="&".join(pairs))
        check(client, response)

    fuzz()
