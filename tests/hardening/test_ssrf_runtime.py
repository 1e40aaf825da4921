"""SSRF at call time, through the real runner and the REST API: an executor whose host name
passes the config-time check but resolves to a refused address when the step runs fails
with FLK-0341 without any socket connecting there; the executor test endpoint refuses it
the same way; redirects and OIDC token endpoints are held to the same rule."""

from __future__ import annotations

import socket

import pytest

from flowker.local_server import LocalHTTPServer
from network_fakes import install_connect_log, install_fake_dns

REFUSED_ANSWERS = {
    "private": ["10.20.30.40"],
    "metadata": ["169.254.169.254"],
    "cgnat": ["100.64.1.1"],
    "aws-ipv6-metadata": ["fd00:ec2::254"],
    "mapped-metadata": ["::ffff:169.254.169.254"],
    "nat64-metadata": ["64:ff9b::a9fe:a9fe"],
    "6to4-metadata": ["2002:a9fe:a9fe::1"],
    "unspecified": ["0.0.0.0"],
    "public-then-private": ["93.184.216.34", "10.0.0.1"],
    "alibaba-metadata": ["100.100.100.200"],
}


@pytest.fixture
def resolver(monkeypatch):
    """``*.partner.test`` names answered as the test says; numeric hosts resolve for real."""
    return install_fake_dns(monkeypatch)


@pytest.fixture
def connects(monkeypatch):
    """Every address a Python socket tried to connect to."""
    return install_connect_log(monkeypatch)


def connected_hosts(connects) -> set[str]:
    return set(connects.hosts())


def setup_workflow(client, base_url: str, authentication: dict | None = None) -> tuple[str, str]:
    body = {
        "name": "partner",
        "baseUrl": base_url,
        "endpoints": [{"name": "score", "path": "/score", "method": "POST", "timeout": 5}],
        "authentication": authentication or {"type": "bearer", "config": {"token": "partner-token-123456"}},
    }
    created = client.simulate_post("/v1/executors", json=body)
    assert created.status_code == 201, created.text  # allowed at config time: a name, not an address
    workflow = {
        "name": "score",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "score", "type": "executor", "data": {"executor": "partner", "endpoint": "score", "body": {"a": 1}}},
        ],
        "edges": [{"source": "start", "target": "score"}],
    }
    workflow_id = client.simulate_post("/v1/workflows", json=workflow).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    return created.json["id"], workflow_id


def run_step(client, workflow_id: str) -> dict:
    started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
    assert started.status_code == 201, started.text
    assert started.json["status"] == "failed"
    results = client.simulate_get(f"/v1/executions/{started.json['executionId']}/results").json
    return next(step for step in results["stepResults"] if step["nodeId"] == "score")


@pytest.mark.parametrize("case", sorted(REFUSED_ANSWERS))
def test_a_name_resolving_to_a_refused_address_fails_the_step_and_the_probe(sqlite_apps, resolver, connects, case):
    resolver.add("api.partner.test", REFUSED_ANSWERS[case])
    client = sqlite_apps.client(retry_max_attempts="3")
    executor_id, workflow_id = setup_workflow(client, "http://api.partner.test:8080")
    step = run_step(client, workflow_id)
    assert step["callDetails"]["errorCode"] == "FLK-0341", step
    assert "api.partner.test" in step["errorMessage"] and "not allowed" in step["errorMessage"]
    assert step["attempts"] <= 1  # a refusal is not retried
    probe = client.simulate_post(f"/v1/executors/{executor_id}/test")
    assert probe.status_code == 422 and probe.json["code"] == "FLK-0341", probe.text
    assert "api.partner.test" in resolver.lookups
    assert connected_hosts(connects) == set(), connects


def test_the_guard_resolves_at_every_call_so_a_changed_answer_is_refused(sqlite_apps, resolver, connects):
    """Each call resolves and checks again: a name that first answered a permitted address
    (loopback, allowed in development) and then a metadata address is refused."""
    with LocalHTTPServer(lambda request: (200, {}, {"ok": True})) as service:
        resolver.add("api.partner.test", ["127.0.0.1"])  # loopback: allowed in development
        client = sqlite_apps.client()
        _, workflow_id = setup_workflow(client, f"http://api.partner.test:{service.port}")
        first = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
        assert first.json["status"] == "completed", first.text
        assert len(service.requests) == 1
        connects.addresses.clear()
        resolver.add("api.partner.test", ["169.254.169.254"])  # the DNS answer changes
        step = run_step(client, workflow_id)
        assert step["callDetails"]["errorCode"] == "FLK-0341"
        assert connected_hosts(connects) == set() and len(service.requests) == 1


def test_production_refuses_loopback_answers_and_nothing_reaches_the_trap(sqlite_apps, resolver, connects):
    trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.setblocking(False)
    try:
        resolver.add("api.partner.test", ["127.0.0.1"])
        client = sqlite_apps.client(env="production")
        https = {"protocol": "https"}
        body = {
            "name": "partner",
            "baseUrl": f"https://api.partner.test:{trap.getsockname()[1]}",
            "endpoints": [{"name": "score", "path": "/score", "method": "POST"}],
            "authentication": {"type": "none"},
        }
        created = client.simulate_post("/v1/executors", json=body, **https)
        assert created.status_code == 201, created.text
        probe = client.simulate_post(f"/v1/executors/{created.json['id']}/test", **https)
        assert probe.status_code == 422 and probe.json["code"] == "FLK-0341"
        assert "loopback" in probe.json["message"]
        with pytest.raises(BlockingIOError):
            trap.accept()  # no connection ever arrived
        assert connected_hosts(connects) == set()
    finally:
        trap.close()


def test_a_redirect_to_a_refused_address_is_not_followed(sqlite_apps, resolver, connects):
    def redirect(request):
        return 302, {"Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}, ""

    with LocalHTTPServer(redirect) as service:
        client = sqlite_apps.client()
        _, workflow_id = setup_workflow(client, service.url)
        step = run_step(client, workflow_id)
        assert step["callDetails"]["errorCode"] == "FLK-0341", step
        assert len(service.requests) == 1
        assert connected_hosts(connects) == {"127.0.0.1"}


def test_an_oidc_issuer_resolving_to_a_metadata_address_is_refused_at_call_time(sqlite_apps, resolver, connects):
    resolver.add("login.partner.test", ["169.254.169.254"])
    with LocalHTTPServer(lambda request: (200, {}, {"ok": True})) as service:
        client = sqlite_apps.client()
        authentication = {
            "type": "oidc_client_credentials",
            "config": {
                "issuer_url": "https://login.partner.test",
                "client_id": "flowker",
                "client_secret": "oidc-secret-0123456789",
            },
        }
        _, workflow_id = setup_workflow(client, service.url, authentication)
        step = run_step(client, workflow_id)
        assert step["callDetails"]["errorCode"] == "FLK-0341", step
        assert "login.partner.test" in step["errorMessage"]
        assert service.requests == []
        assert connected_hosts(connects) == set()


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254",
        "http://[::ffff:a9fe:a9fe]",
        "http://0xa9.0xfe.0xa9.0xfe",
        "http://2852039166",
        "http://metadata.google.internal",
        "http://user:pw@api.partner.test",
        "file:///etc/passwd",
        "http://10.0.0.1",
        "http://[fd00:ec2::254]",
        "http://100.100.100.200",
    ],
)
def test_literal_refused_addresses_are_refused_at_config_time(sqlite_apps, resolver, base_url):
    client = sqlite_apps.client()
    response = client.simulate_post(
        "/v1/executors",
        json={
            "name": "partner",
            "baseUrl": base_url,
            "endpoints": [{"name": "x", "path": "/x", "method": "GET"}],
            "authentication": {"type": "none"},
        },
    )
    assert response.status_code == 422, response.text
    assert response.json["code"] in ("FLK-0341", "FLK-0120"), response.text
    assert "pw@" not in response.text
    assert resolver.lookups == []  # config time never resolves names
