"""Hostile input gets a clear 4xx and changes nothing: bodies over the limit refused without
being read, YAML alias bombs and deep nesting refused quickly, unknown fields refused,
every path and query parameter validated (400, never 500); and no request, however
crafted, spends more than about a second of CPU (``cpu_clock.cpu_seconds`` around each call).
"""

from __future__ import annotations

import io
import json
import uuid

import falcon.testing
import pytest

from flowker.api.openapi import OPERATIONS
from flowker.local_server import LocalHTTPServer

from cpu_clock import cpu_seconds as cpu
from hardening_helpers import API_KEY

# "About 1 s of CPU" per request, with room for a slow or busy test machine: the same
# request measured 0.4-0.45 s one day and 1.4-1.6 s on another (2026-12-07, both on the
# commit a6aa267), so the bound allows that drift. What it guards against - work growing
# with the square of the nodes or expressions - costs tens of seconds here, not a few.
CPU_LIMIT_SECONDS = 3.0
MIB = 1024 * 1024
SAMPLE_ID = str(uuid.uuid4())


def workflow_body(name: str = "w", nodes: list | None = None, edges: list | None = None) -> dict:
    return {
        "name": name,
        "nodes": nodes
        or [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"a": 1}}},
        ],
        "edges": edges or [{"source": "start", "target": "out"}],
    }


def executor_body(base_url: str = "https://ledger.example.com", name: str = "ledger") -> dict:
    return {
        "name": name,
        "baseUrl": base_url,
        "endpoints": [{"name": "echo", "path": "/echo", "method": "POST"}],
        "authentication": {"type": "bearer", "config": {"token": "ledger-token-123456"}},
    }


def count(client, path: str) -> int:
    return len(client.simulate_get(path, params={"limit": 100}).json["items"])


# -------------------------------------------------------------------------------- body size


class ExplodingStream(io.RawIOBase):
    """A request body that must never be read."""

    def __init__(self):
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size=-1):
        self.reads += 1
        raise AssertionError("the body was read")

    readinto = read


class EndlessStream(io.RawIOBase):
    """A chunked body that never ends: only a reader that stops at the limit survives it."""

    def __init__(self):
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size=-1):
        size = 65536 if size is None or size < 0 else size
        self.bytes_read += size
        if self.bytes_read > 64 * MIB:
            raise AssertionError("kept reading far past the limit")
        return b" " * size


def raw_request(app, method: str, path: str, stream, content_length: str | None, key: str | None = API_KEY):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    environ = falcon.testing.create_environ(path=path, method=method, headers=headers)
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    else:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    result = {}

    def start_response(status, headers, exc_info=None):
        result["status"], result["headers"] = status, {name.title(): value for name, value in headers}

    body = b"".join(app(environ, start_response))
    return int(result["status"][:3]), result["headers"], json.loads(body)


BODY_OPERATIONS = [op for op in OPERATIONS if op.body]


def concrete(path: str) -> str:
    return (
        path.replace("{path:path}", "hooks/pay").replace("{workflow_id}", SAMPLE_ID).replace("{executor_id}", SAMPLE_ID)
    )


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
@pytest.mark.parametrize("key", [API_KEY, None], ids=["with-key", "without-key"])
def test_oversized_bodies_get_413_without_being_read(sqlite_apps, op, key):
    app = sqlite_apps(max_body_bytes="4096")
    stream = ExplodingStream()
    status, headers, body = raw_request(app, op.method, concrete(op.path), stream, str(10 * 1024**3), key=key)
    assert status == 413, body
    assert body["code"] == ("FLK-0363" if "webhooks" in op.path else "FLK-0506")
    assert "4096 bytes" in body["message"]
    assert headers.get("Connection") == "close"  # the unread body must not be taken for a new request
    assert stream.reads == 0


def test_a_body_without_length_is_cut_off_at_the_limit(sqlite_apps):
    app = sqlite_apps(max_body_bytes="100000")
    client = sqlite_apps.client(app)
    hook = workflow_body(
        "hook",
        nodes=[
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "webhook", "path": "/hooks/pay", "method": "POST"},
            },
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"a": 1}}},
        ],
    )
    hook_id = client.simulate_post("/v1/workflows", json=hook).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{hook_id}/activate").status_code == 200
    for path in ("/v1/workflows", "/v1/webhooks/hooks/pay", f"/v1/workflows/{SAMPLE_ID}/executions"):
        stream = EndlessStream()
        (status, _, body), seconds = cpu(lambda: raw_request(app, "POST", path, stream, None))
        assert status == 413, body
        assert stream.bytes_read <= 100001 + 65536, stream.bytes_read
        assert seconds < CPU_LIMIT_SECONDS


def test_bad_content_length_is_a_400(sqlite_apps):
    app = sqlite_apps()
    for value in ("abc", "-1", "+5", "1_0", "1e9", "9" * 400):
        status, _, body = raw_request(app, "POST", "/v1/workflows", io.BytesIO(b"{}"), value)
        assert status in (400, 413), (value, body)
        assert body["code"].startswith("FLK-")


# -------------------------------------------------------------------------------- YAML and nesting


YAML_BOMBS = {
    "billion laughs": (
        "kind: Workflow\nname: bomb\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    ),
    "alias only": "kind: Workflow\nname: *undefined\n",
    "merge key": "kind: Workflow\nbase: &base {name: x}\n<<: *base\n",
    "deep flow": "[" * 100000,
    "deep block": "".join("  " * i + f"k{i}:\n" for i in range(2000)),
    "python tag": "kind: Workflow\nname: !!python/object/apply:os.system ['true']\n",
    "custom tag": "kind: Workflow\nname: !secret x\n",
    "two documents": "kind: Workflow\nname: a\n---\nkind: Workflow\nname: b\n",
    "duplicate keys": "kind: Workflow\nname: a\nname: b\nnodes: []\nedges: []\n",
    "binary junk": "kind: Workflow\nname: \x00\x01\x02",
    "huge scalar": "kind: Workflow\nname: " + "x" * (300 * 1024),
    "tabs and colons": "kind: Workflow\n\tname: : : :\n" * 1000,
}


@pytest.mark.parametrize("name", sorted(YAML_BOMBS))
def test_hostile_yaml_is_refused_quickly_and_creates_nothing(sqlite_apps, name):
    client = sqlite_apps.client()
    before = count(client, "/v1/workflows")
    for path in ("/v1/workflows", "/v1/executors"):
        response, seconds = cpu(
            lambda: client.simulate_post(path, body=YAML_BOMBS[name], headers={"Content-Type": "application/yaml"})
        )
        assert response.status_code in (400, 413, 422), (path, response.text[:300])
        assert response.json["code"].startswith("FLK-") and response.json["message"]
        assert seconds < CPU_LIMIT_SECONDS, seconds
    assert count(client, "/v1/workflows") == before


def nested(depth: int, leaf="x") -> object:
    value = leaf
    for index in range(depth):
        value = [value] if index % 2 else {"k": value}
    return value


@pytest.mark.parametrize("what", ["spec node body", "execution input", "webhook body", "patch", "whole body"])
def test_deep_json_nesting_is_a_400_never_a_500(sqlite_apps, what):
    client = sqlite_apps.client()
    created = client.simulate_post("/v1/executors", json=executor_body())
    assert created.status_code == 201
    workflow = workflow_body(
        "deep",
        nodes=[
            {"id": "start", "type": "trigger", "data": {"triggerType": "webhook", "path": "/deep", "method": "POST"}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"a": 1}}},
        ],
    )
    workflow_id = client.simulate_post("/v1/workflows", json=workflow).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    for depth in (40, 100, 900):
        value = nested(depth)
        requests = {
            "spec node body": (
                "POST",
                "/v1/workflows",
                workflow_body(
                    f"d{depth}",
                    nodes=[
                        {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
                        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"v": value}}},
                    ],
                ),
            ),
            "execution input": ("POST", f"/v1/workflows/{workflow_id}/executions", {"inputData": {"v": value}}),
            "webhook body": ("POST", "/v1/webhooks/deep", {"v": value}),
            "patch": ("PATCH", f"/v1/executors/{created.json['id']}", {"description": "x", "metadata": value}),
            "whole body": ("POST", "/v1/workflows", value),
        }
        method, path, body = requests[what]
        response, seconds = cpu(
            lambda: client.simulate_request(
                method, path, body=json.dumps(body), headers={"Content-Type": "application/json"}
            )
        )
        if depth > 64 or (what in ("spec node body", "whole body") and depth > 32):
            assert response.status_code == 400, (depth, response.text[:300])
            assert "nested" in response.json["message"]
        else:
            assert response.status_code < 500, (depth, response.text[:300])
        assert seconds < CPU_LIMIT_SECONDS
    # A megabyte of brackets is refused as fast.
    response, seconds = cpu(
        lambda: client.simulate_post(
            "/v1/workflows", body="[" * (MIB - 100), headers={"Content-Type": "application/json"}
        )
    )
    assert response.status_code == 400 and seconds < CPU_LIMIT_SECONDS


# -------------------------------------------------------------------------------- unknown fields


def test_unknown_fields_are_refused_everywhere(sqlite_apps):
    client = sqlite_apps.client()
    executor_id = client.simulate_post("/v1/executors", json=executor_body()).json["id"]
    base = workflow_body()
    workflow_id = client.simulate_post("/v1/workflows", json=workflow_body("target")).json["workflowId"]
    cases = {
        "workflow top level": ("POST", "/v1/workflows", {**base, "owner": "x"}),
        "workflow node": (
            "POST",
            "/v1/workflows",
            {**base, "nodes": [{**base["nodes"][0], "colour": "red"}, base["nodes"][1]]},
        ),
        "trigger data": (
            "POST",
            "/v1/workflows",
            {
                **base,
                "nodes": [
                    {"id": "start", "type": "trigger", "data": {"triggerType": "manual", "cron": "* * * * *"}},
                    base["nodes"][1],
                ],
            },
        ),
        "edge": ("POST", "/v1/workflows", {**base, "edges": [{"source": "start", "target": "out", "weight": 1}]}),
        "executor top level": ("POST", "/v1/executors", {**executor_body(name="e2"), "retries": 3}),
        "executor endpoint": (
            "POST",
            "/v1/executors",
            {**executor_body(name="e3"), "endpoints": [{"name": "x", "path": "/x", "method": "GET", "verify": False}]},
        ),
        "auth config": (
            "POST",
            "/v1/executors",
            {
                **executor_body(name="e4"),
                "authentication": {"type": "bearer", "config": {"token": "t-123456789", "tokne": "t"}},
            },
        ),
        "auth block": (
            "POST",
            "/v1/executors",
            {**executor_body(name="e5"), "authentication": {"type": "none", "config": {}, "insecure": True}},
        ),
        "executor patch": ("PATCH", f"/v1/executors/{executor_id}", {"proxy": "http://evil"}),
        "execute request": ("POST", f"/v1/workflows/{workflow_id}/executions", {"inputData": {}, "debug": True}),
        "clone request": ("POST", f"/v1/workflows/{workflow_id}/clone", {"name": "c", "status": "active"}),
    }
    for name, (method, path, body) in cases.items():
        response = client.simulate_request(method, path, json=body)
        assert response.status_code == 422, (name, response.text[:300])
        assert response.json["code"].startswith("FLK-"), name
    assert count(client, "/v1/executors") == 1
    assert count(client, "/v1/workflows") == 1


# -------------------------------------------------------------------------------- parameters


BAD_IDS = [
    "not-a-uuid",
    "1",
    "0b8f1c6e-8d2a-4a43-9c1e-6a1c2f3b4d5",
    "0b8f1c6e8d2a4a439c1e6a1c2f3b4d5e00",
    "x" * 5000,
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "\u00e9\u00e9",
    "'; DROP TABLE workflow; --",
    "{{7*7}}",
    " " + SAMPLE_ID,
    SAMPLE_ID + "\n",
]
ITEM_ROUTES = [
    ("GET", "/v1/workflows/{}"),
    ("PUT", "/v1/workflows/{}"),
    ("DELETE", "/v1/workflows/{}"),
    ("POST", "/v1/workflows/{}/activate"),
    ("POST", "/v1/workflows/{}/clone"),
    ("POST", "/v1/workflows/{}/executions"),
    ("GET", "/v1/executors/{}"),
    ("PATCH", "/v1/executors/{}"),
    ("POST", "/v1/executors/{}/test"),
    ("GET", "/v1/executions/{}"),
    ("GET", "/v1/executions/{}/results"),
    ("GET", "/v1/audit-events/{}"),
    ("GET", "/v1/audit-events/{}/verify"),
]


@pytest.mark.parametrize("route", ITEM_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_bad_ids_are_400_never_500(make_app, route):
    from urllib.parse import quote

    client = make_app.client()
    method, template = route
    body = {"inputData": {}} if template.endswith("/executions") else {"name": "x"}
    for bad in BAD_IDS:
        response = client.simulate_request(method, template.format(quote(bad, safe="%")), json=body)
        if "%2F" in bad:  # decoded to "/": another path, which no route has
            assert response.status_code == 404 and response.json["code"] == "FLK-0404", response.text
            continue
        assert response.status_code == 400, (bad, response.status_code, response.text[:200])
        assert response.json["code"] == ("FLK-0001" if bad == "%00" else "FLK-0002"), (bad, response.json)
    # A well-formed id that names nothing is a 404.
    response = client.simulate_request(method, template.format(SAMPLE_ID), json=body)
    assert response.status_code == 404, response.text


def tampered_cursors(client) -> list[str]:
    import base64

    def encode(payload) -> str:
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    return [
        "",
        "x",
        "!!!!",
        "%%%",
        "a" * 3000,
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        encode([1, 2]),
        encode({"s": "createdAt"}),
        encode({"s": "nope", "o": "ASC", "v": 1, "id": "x"}),
        encode({"s": "createdAt", "o": "SIDEWAYS", "v": "2024-01-01T00:00:00", "id": "x"}),
        encode({"s": "createdAt", "o": "ASC", "v": "yesterday", "id": "x"}),
        encode({"s": "createdAt", "o": "ASC", "v": 10**40, "id": "x"}),
        encode({"s": "createdAt", "o": "ASC", "v": "2024-01-01T00:00:00", "id": {"$gt": ""}}),
        encode({"s": "createdAt", "o": "ASC", "v": ["a"], "id": "x"}),
        encode({"s": "sequence", "o": "ASC", "v": "2024", "id": 1}),
        encode({"s": "createdAt", "o": "ASC", "v": "2024-01-01T00:00:00", "id": 10**30}),
    ]


LISTS = {
    "/v1/workflows": {"status": ["archived", ""], "sortBy": ["id", "name;drop"]},
    "/v1/executors": {"status": ["paused"], "sortBy": ["baseUrl"]},
    "/v1/executions": {"status": ["done"], "workflowId": ["nope", "x" * 300], "sortBy": ["completedAt"]},
    "/v1/audit-events": {
        "eventType": ["lower", "A" * 100, "X' OR 1=1"],
        "result": ["MAYBE"],
        "resourceType": ["UPPER", "x" * 40],
        "resourceId": ["", "x" * 300],
        "dateFrom": [
            "2024-13-45T00:00:00Z",
            "yesterday",
            "1700000000",
            "2024-01-01",
            "9999999-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
        ],
        "dateTo": ["2024-01-01T25:00:00Z"],
    },
    "/v1/dashboards/executions": {
        "startTime": ["tomorrow", "2024-01-01T00:00:00+25:00"],
        "endTime": ["0"],
        "status": ["any"],
    },
}


@pytest.mark.parametrize("path", sorted(LISTS))
def test_bad_query_parameters_are_400_never_500(make_app, path):
    client = make_app.client()
    for index in range(3):  # a few rows, so cursors and pages exist
        client.simulate_post("/v1/workflows", json=workflow_body(f"w{index}"))
    cases = [(name, value) for name, values in LISTS[path].items() for value in values]
    if path != "/v1/dashboards/executions":
        cases += [("limit", v) for v in ("0", "-1", "101", "1e3", "abc", "1.5", str(10**30), "", " 5", "0x10")]
        cases += [("sortOrder", v) for v in ("up", "DESC;", "")]
        cases += [("cursor", v) for v in tampered_cursors(client) if v]
    cases += [("unknownParam", "1"), ("limit[]", "1"), ("limit", "1\x00"), ("cursor", "\x00")]
    if path == "/v1/audit-events":
        cases += [("resourceId", "a\x00b"), ("eventType", "ABC\n")]
    for name, value in cases:
        response = client.simulate_get(path, params={name: value})
        assert response.status_code == 400, (path, name, value[:50], response.status_code, response.text[:200])
        assert response.json["code"].startswith("FLK-0"), (name, response.json)
    if path == "/v1/audit-events":
        reversed_range = client.simulate_get(
            path, params={"dateFrom": "2025-01-02T00:00:00Z", "dateTo": "2025-01-01T00:00:00Z"}
        )
        assert reversed_range.status_code == 400
    # Repeated parameters and a cursor of another list are refused too.
    if path in ("/v1/workflows", "/v1/executors"):
        assert client.simulate_get(path, query_string="limit=1&limit=2").status_code == 400
    page = client.simulate_get("/v1/workflows", params={"limit": 1}).json
    if path in ("/v1/executions", "/v1/audit-events") and page["nextCursor"]:
        response = client.simulate_get(path, params={"cursor": page["nextCursor"]})
        assert response.status_code == 400, response.text


# -------------------------------------------------------------------------------- CPU


def max_workflow(expressions_per_node: int) -> dict:
    """100 nodes, 200 edges: a chain plus a skip edge per node, each node full of expressions."""
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    for index in range(99):
        values = {
            f"v{j}": f"${{{{ workflow.amount * {j} + size(nodes.start) + {index} }}}}"
            for j in range(expressions_per_node)
        }
        nodes.append({"id": f"n{index}", "type": "action", "data": {"actionType": "transform", "values": values}})
    edges = [{"source": "start" if i == 0 else f"n{i - 1}", "target": f"n{i}"} for i in range(99)]
    edges += [
        {"source": "start" if i < 2 else f"n{i - 2}", "target": f"n{i}", "condition": f"workflow.amount > {i}"}
        for i in range(99)
    ]
    edges += [{"source": "start", "target": "n98", "condition": "true"}, {"source": "n0", "target": "n98"}]
    return {"name": "maximal", "nodes": nodes, "edges": edges}


def test_a_maximal_workflow_costs_under_a_second_per_request(sqlite_apps):
    client = sqlite_apps.client()
    body = max_workflow(expressions_per_node=49)  # 4 851 + 100 edge conditions, under the 5 000 cap
    assert len(body["nodes"]) == 100 and len(body["edges"]) == 200
    created, seconds = cpu(lambda: client.simulate_post("/v1/workflows", json=body))
    assert created.status_code == 201, created.text[:500]
    assert seconds < CPU_LIMIT_SECONDS, f"create: {seconds:.2f} s"
    workflow_id = created.json["workflowId"]
    activated, seconds = cpu(lambda: client.simulate_post(f"/v1/workflows/{workflow_id}/activate"))
    assert activated.status_code == 200, activated.text[:500]
    assert seconds < CPU_LIMIT_SECONDS, f"activate: {seconds:.2f} s"
    for attempt in range(2):  # the first run compiles the plan
        run, seconds = cpu(
            lambda: client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 120}})
        )
        assert run.status_code == 201 and run.json["status"] == "completed", run.text[:500]
        assert seconds < CPU_LIMIT_SECONDS, f"run {attempt}: {seconds:.2f} s"


def test_too_many_expressions_are_refused_before_compiling(sqlite_apps):
    client = sqlite_apps.client()
    body = max_workflow(expressions_per_node=60)
    response, seconds = cpu(lambda: client.simulate_post("/v1/workflows", json=body))
    assert response.status_code == 422 and "at most 5000" in response.text, response.text[:300]
    assert seconds < CPU_LIMIT_SECONDS
    # Within 1 MiB: tens of thousands of tiny templates in arrays.
    packed = workflow_body(
        "packed",
        nodes=[
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {
                "id": "out",
                "type": "action",
                "data": {
                    "actionType": "set_output",
                    "output": {f"k{j}": [f"${{{{{j * 1000 + i}}}}}" for i in range(1000)] for j in range(60)},
                },
            },
        ],
    )
    response, seconds = cpu(lambda: client.simulate_post("/v1/workflows", json=packed))
    assert response.status_code == 422 and seconds < CPU_LIMIT_SECONDS, (response.status_code, seconds)


def test_unterminated_templates_cost_linear_time(sqlite_apps):
    """``${{`` without a closing ``}}``, repeated: the template scan once took minutes here."""
    client = sqlite_apps.client()
    strings = {f"k{i}": "${{" * 5000 for i in range(60)}  # 60 strings of 15 000 characters
    body = workflow_body(
        "open",
        nodes=[
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": strings}},
        ],
    )
    response, seconds = cpu(lambda: client.simulate_post("/v1/workflows", json=body))
    assert response.status_code == 422 and "unterminated" in response.text
    assert seconds < CPU_LIMIT_SECONDS, seconds


def test_expressions_reading_a_large_input_stop_at_the_cpu_budget(sqlite_apps):
    client = sqlite_apps.client()
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    for index in range(99):
        nodes.append(
            {
                "id": f"n{index}",
                "type": "action",
                "data": {
                    "actionType": "transform",
                    "values": {f"v{j}": f"${{{{ size(workflow.big) + {index * 100 + j} }}}}" for j in range(20)},
                },
            }
        )
    edges = [{"source": "start" if i == 0 else f"n{i - 1}", "target": f"n{i}"} for i in range(99)]
    workflow_id = client.simulate_post("/v1/workflows", json=workflow_body("reader", nodes, edges)).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    big = json.dumps({"inputData": {"big": list(range(120000))}})
    run, seconds = cpu(
        lambda: client.simulate_post(
            f"/v1/workflows/{workflow_id}/executions", body=big, headers={"Content-Type": "application/json"}
        )
    )
    assert run.status_code == 201 and run.json["status"] == "failed", run.text[:300]
    assert "used more than 1 s of CPU" in run.json["errorMessage"]
    assert seconds < CPU_LIMIT_SECONDS + 0.5, seconds


HEADER_ATTACKS = {
    "X-Forwarded-For": ",".join(["203.0.113.9"] * 100000),
    "Prefer": ",".join(["respond-async;wait=1"] * 40000),
    "Content-Type": "application/json;" + "charset=utf-8;" * 40000,
    "Origin": "https://" + "a." * 250000 + "example",
    "X-Request-ID": "a" * 500000,
    "X-API-Key": "k" * 1000000,
    "Idempotency-Key": "i" * 1000000,
    "Accept": "application/json;q=0.9," * 40000,
    "X-Forwarded-Proto": "https," * 100000,
    "Authorization": "Bearer " + "a." * 400000,
    "Cookie": "a=b; " * 200000,
}


@pytest.mark.parametrize("header", sorted(HEADER_ATTACKS))
def test_huge_and_regex_heavy_headers_are_cheap(sqlite_apps, header):
    app = sqlite_apps(trusted_proxies="127.0.0.0/8", cors_allowed_origins="https://ui.example.com")
    client = sqlite_apps.client(app)
    for method, path in (
        ("GET", "/v1/workflows"),
        ("POST", f"/v1/workflows/{SAMPLE_ID}/executions"),
        ("POST", "/v1/webhooks/hooks/pay"),
        ("GET", "/health"),
    ):
        headers = {header: HEADER_ATTACKS[header]}
        response, seconds = cpu(
            lambda: client.simulate_request(method, path, headers=headers, json={}, remote_addr="127.0.0.1")
        )
        assert response.status_code < 500, (method, path, response.text[:200])
        assert seconds < CPU_LIMIT_SECONDS, (method, path, seconds)


def test_huge_query_strings_and_paths_are_cheap(sqlite_apps):
    client = sqlite_apps.client()
    attacks = [
        ("GET", "/v1/workflows", "&".join(f"p{i}=1" for i in range(100000))),
        ("GET", "/v1/audit-events", "eventType=" + "A" * 1000000),
        ("POST", "/v1/webhooks/hooks/pay", "&".join(f"token{i}=a.b.c" for i in range(60000))),
    ]
    for method, path, query in attacks:
        response, seconds = cpu(lambda: client.simulate_request(method, path, query_string=query, json={}))
        assert response.status_code < 500 and seconds < CPU_LIMIT_SECONDS, (path, response.status_code, seconds)
    response, seconds = cpu(lambda: client.simulate_get("/v1/webhooks/" + "a/" * 300000))
    assert response.status_code == 404 and seconds < CPU_LIMIT_SECONDS


ECHO_INPUTS = {
    "dots": "a." * 500000,
    "url-ish dots": "a." * 499990 + "x://y",
    "quoted pairs": '"a":"' * 120000,
    "bare pairs": "token=ab " * 110000,
    "basic words": "basic ?&" * 120000,
    "plain": "x" * 1000000,
}


@pytest.mark.parametrize("name", sorted(ECHO_INPUTS))
def test_a_megabyte_of_hostile_text_through_a_run_costs_under_a_second(sqlite_apps, name):
    """The input goes to an executor that echoes it back: scrubbed as step input, output and
    final output, each time in linear time. (The final output, every node's output, holds
    the input twice: past the 1 MiB default output cap, raised here.)"""
    with LocalHTTPServer(lambda request: (200, {"Content-Type": "application/json"}, request.body)) as echo:
        client = sqlite_apps.client(max_output_bytes=str(4 * MIB))
        assert client.simulate_post("/v1/executors", json=executor_body(echo.url, "echo")).status_code == 201
        nodes = [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {
                "id": "call",
                "type": "executor",
                "data": {"executor": "echo", "endpoint": "echo", "body": {"x": "${{ workflow.x }}"}},
            },
        ]
        workflow_id = client.simulate_post(
            "/v1/workflows", json=workflow_body("echo", nodes, [{"source": "start", "target": "call"}])
        ).json["workflowId"]
        assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
        body = json.dumps({"inputData": {"x": ECHO_INPUTS[name]}})
        assert len(body) < MIB
        run, seconds = cpu(
            lambda: client.simulate_post(
                f"/v1/workflows/{workflow_id}/executions", body=body, headers={"Content-Type": "application/json"}
            )
        )
        assert run.status_code == 201 and run.json["status"] == "completed", run.text[:300]
        assert seconds < CPU_LIMIT_SECONDS, seconds


def test_a_deeply_nested_executor_answer_fails_the_step_not_the_server(sqlite_apps):
    deep = "[" * 950 + "1" + "]" * 950
    with LocalHTTPServer(lambda request: (200, {"Content-Type": "application/json"}, deep)) as service:
        client = sqlite_apps.client()
        assert client.simulate_post("/v1/executors", json=executor_body(service.url, "deep")).status_code == 201
        nodes = [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "call", "type": "executor", "data": {"executor": "deep", "endpoint": "echo"}},
        ]
        workflow_id = client.simulate_post(
            "/v1/workflows", json=workflow_body("deep", nodes, [{"source": "start", "target": "call"}])
        ).json["workflowId"]
        assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
        run = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
        assert run.status_code == 201, run.text[:300]
        results = client.simulate_get(f"/v1/executions/{run.json['executionId']}/results")
        assert results.status_code == 200
        events = client.simulate_get("/v1/audit-events", params={"limit": 1}).json["items"]
        assert client.simulate_get(f"/v1/audit-events/{events[0]['eventId']}/verify").json["isValid"] is True


def test_nul_characters_are_a_400_on_every_backend(make_app):
    """PostgreSQL refuses NUL in text: a name, filter or webhook path holding one was a 500."""
    client = make_app.client()
    nul_name = workflow_body("a\u0000b")
    cases = [
        ("POST", "/v1/workflows", {"json": nul_name}),
        (
            "POST",
            "/v1/workflows",
            {
                "body": 'kind: Workflow\nname: "a\\0b"\nnodes: []\nedges: []\n',
                "headers": {"Content-Type": "application/yaml"},
            },
        ),
        ("POST", "/v1/executors", {"json": {**executor_body(name="e\u0000")}}),
        ("POST", "/v1/webhooks/a%00b", {"json": {}}),
        ("GET", "/v1/audit-events", {"query_string": "resourceId=a%00b"}),
        ("GET", "/v1/workflows", {"query_string": "status=draft%00"}),
        ("POST", f"/v1/workflows/{SAMPLE_ID}/executions", {"json": {"inputData": {"k\u0000": 1}}}),
    ]
    for method, path, options in cases:
        response = client.simulate_request(method, path, **options)
        assert response.status_code == 400, (method, path, response.text[:200])
        assert "NUL" in response.json["message"]
    assert count(client, "/v1/workflows") == 0 and count(client, "/v1/executors") == 0
