"""One circuit breaker per executor for the whole fleet: two ``flowker serve`` processes of two
workers each on one PostgreSQL schema. Runs sent one after the other through both servers
make exactly the threshold of calls to a down service; then every worker refuses at once
(FLK-0507, naming the executor) without a call."""

from __future__ import annotations

import threading

import pytest

from flowker.local_server import LocalHTTPServer
from scale_helpers import YAML, api_session, create_workflow, executor_yaml

pytestmark = pytest.mark.postgres

THRESHOLD = 3


class DownService:
    """Answers 503 to everything, counting the calls."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request):
        with self._lock:
            self.calls += 1
        return 503, {}, {"error": "down"}


def test_the_fleet_opens_one_breaker_after_the_threshold_of_calls(cluster):
    service = DownService()
    env = {"FLOWKER_CB_FAILURE_THRESHOLD": str(THRESHOLD), "FLOWKER_CB_RECOVERY_SECONDS": "600"}
    with LocalHTTPServer(service) as down:
        a, b = cluster.start(2, workers=2, env=env)
        api = api_session()
        response = api.post(f"{a.url}/v1/executors", data=executor_yaml(down.url), headers=YAML)
        assert response.status_code == 201, response.text
        create_workflow(api, a.url, "breaker-fleet", path="/scale/breaker", activate_via=b.url)

        codes, attempts = [], []
        for index in range(12):  # enough to reach every worker of both servers
            server = (a, b)[index % 2]
            response = api.post(f"{server.url}/v1/webhooks/scale/breaker", json={"amount": 1})
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "failed", response.text
            results = api.get(f"{server.url}/v1/executions/{response.json()['executionId']}/results").json()
            step = next(s for s in results["stepResults"] if s["nodeId"] == "score")
            codes.append(step["callDetails"].get("errorCode"))
            attempts.append(step["attempts"])
        # Per-worker breakers would have let 3 calls through per worker (up to 12).
        assert service.calls == THRESHOLD, codes
        # The first run's fourth attempt is refused too; every later run makes no call at all.
        assert attempts == [THRESHOLD] + [0] * 11 and set(codes) == {"FLK-0507"}, (attempts, codes)
        assert "executor 'scorer'" in step["errorMessage"], step
