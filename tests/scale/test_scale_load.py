"""Two ``flowker serve`` processes on one PostgreSQL under mixed load, one killed with
SIGKILL mid-load and restarted: nothing acknowledged is lost or duplicated, every run
has its steps and audit entries, orphaned runs are recovered (by the live server's lease
sweep), the chain is one chain.

The load is bounded (a fixed list of operations, 8 client threads, 30 s per request):
synchronous and asynchronous REST triggers, webhooks, same-key triggers sent to both
servers at once, and configuration changes (create on one server, update on the
other, activate, then a webhook through the other). Every trigger carries an
Idempotency-Key; a request that dies with its server is retried on the other one with
the same key, as a client behind a load balancer would.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests

from scale_helpers import (
    LEASE_SECONDS,
    YAML,
    api_session,
    assert_one_linear_chain,
    create_workflow,
    database_report,
    executor_yaml,
    wait_for,
    workflow_yaml,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENT_THREADS = 8
PHASE_ONE_OPERATIONS = 192
KILL_AFTER = 72  # operations finished before server A is killed
PHASE_TWO_OPERATIONS = 96
ORPHANS = 3  # synchronous runs held inside their executor call on A when it dies
MIX = ("sync", "async", "webhook", "sync", "pair", "webhook", "async", "config")
TRIGGER_OK = {201, 202, 200}


class Fleet:
    """The servers' URLs; a killed one is None until it is back."""

    def __init__(self, urls):
        self.urls = list(urls)
        self._lock = threading.Lock()

    def pick(self, index: int) -> str:
        with self._lock:
            preferred = self.urls[index % len(self.urls)]
            return preferred or next(url for url in self.urls if url)

    def replace(self, slot: int, url: str | None) -> None:
        with self._lock:
            self.urls[slot] = url


class Load:
    """Sends the operations and keeps the ledger of what was acknowledged."""

    def __init__(self, fleet: Fleet, workflow_id: str):
        self.fleet = fleet
        self.workflow_id = workflow_id
        self.local = threading.local()
        self.lock = threading.Lock()
        self.acks: list[dict] = []  # every 2xx trigger answer: kind, key, id, http, status
        self.config: list[dict] = []  # acknowledged configuration changes
        self.unexpected: list[str] = []  # any answer that is neither 2xx nor a dead server
        self.connection_errors = 0
        self.abandoned = 0
        self.finished = 0
        self.finished_event = threading.Event()
        self.kill_after: int | None = None

    def session(self) -> requests.Session:
        if not hasattr(self.local, "api"):
            self.local.api = api_session()
        return self.local.api

    def send(self, index: int, method: str, path: str, *, failover: bool = True, **options):
        """The response, retried on the other server if this one is dead; None if none answered."""
        for attempt in range(4 if failover else 1):
            url = self.fleet.pick(index + attempt)
            try:
                return self.session().request(method, url + path, timeout=30, **options)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # The server died before or while answering (killed mid-body: ChunkedEncodingError).
                with self.lock:
                    self.connection_errors += 1
                self.local.api = api_session()
                time.sleep(0.1)
        return None

    def ack(self, kind: str, key: str, response, expected=TRIGGER_OK, **extra) -> dict | None:
        if response is None:
            with self.lock:
                self.abandoned += 1
            return None
        if response.status_code not in expected:
            with self.lock:
                self.unexpected.append(f"{kind} {key}: HTTP {response.status_code} {response.text[:300]}")
            return None
        body = response.json()
        record = {
            "kind": kind,
            "key": key,
            "id": body["executionId"],
            "http": response.status_code,
            "status": body["status"],
            **extra,
        }
        with self.lock:
            self.acks.append(record)
        return record

    # -- operations ----------------------------------------------------------------

    def trigger(self, index: int, asynchronous: bool) -> None:
        key = f"t-{index}"
        headers = {"Idempotency-Key": key, **({"Prefer": "respond-async"} if asynchronous else {})}
        response = self.send(
            index,
            "POST",
            f"/v1/workflows/{self.workflow_id}/executions",
            json={"inputData": {"amount": index}},
            headers=headers,
        )
        self.ack("async" if asynchronous else "sync", key, response)

    def webhook(self, index: int) -> None:
        key = f"w-{index}"
        response = self.send(
            index, "POST", "/v1/webhooks/scale/load", json={"amount": index}, headers={"Idempotency-Key": key}
        )
        self.ack("webhook", key, response)

    def pair(self, index: int) -> None:
        """One key, sent to both servers at the same moment."""
        key = f"p-{index}"
        barrier = threading.Barrier(2)
        responses = [None, None]

        def one(slot: int) -> None:
            barrier.wait(timeout=10)
            responses[slot] = self.send(
                index + slot,
                "POST",
                f"/v1/workflows/{self.workflow_id}/executions",
                json={"inputData": {"amount": index}},
                headers={"Idempotency-Key": key},
            )

        threads = [threading.Thread(target=one, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=70)
        for response in responses:
            self.ack("pair", key, response)

    def change_config(self, index: int) -> None:
        """Create on one server, update on the other, activate, then a webhook via the other."""
        name, path = f"cfg-{index}", f"/scale/cfg-{index}"
        response = self.send(
            index,
            "POST",
            "/v1/workflows",
            failover=False,
            data=workflow_yaml(name, path=path, label="v1"),
            headers=YAML,
        )
        if response is None or response.status_code != 201:
            return self._config_failed(name, "create", response)
        workflow_id = response.json()["workflowId"]
        steps = [
            (
                "PUT",
                f"/v1/workflows/{workflow_id}",
                {"data": workflow_yaml(name, path=path, label="v2"), "headers": YAML},
                "update",
            ),
            ("POST", f"/v1/workflows/{workflow_id}/activate", {}, "activate"),
        ]
        for offset, (method, route, options, what) in enumerate(steps, start=1):
            response = self.send(index + offset, method, route, failover=False, **options)
            if response is None or response.status_code != 200:
                return self._config_failed(name, what, response)
        with self.lock:
            self.config.append({"workflow_id": workflow_id, "name": name})
        response = self.send(
            index + 1, "POST", f"/v1/webhooks{path}", json={"amount": index}, headers={"Idempotency-Key": f"c-{index}"}
        )
        self.ack("config-webhook", f"c-{index}", response, workflow_id=workflow_id)

    def _config_failed(self, name: str, what: str, response) -> None:
        if response is None:  # the server died under it: not acknowledged, nothing to check
            with self.lock:
                self.abandoned += 1
            return
        with self.lock:
            self.unexpected.append(f"config {name} {what}: HTTP {response.status_code} {response.text[:300]}")

    def operation(self, index: int) -> None:
        kind = MIX[index % len(MIX)]
        try:
            if kind in ("sync", "async"):
                self.trigger(index, kind == "async")
            elif kind == "webhook":
                self.webhook(index)
            elif kind == "pair":
                self.pair(index)
            else:
                self.change_config(index)
        except Exception as exc:  # noqa: BLE001 - recorded, and the test fails on it
            with self.lock:
                self.unexpected.append(f"operation {index} ({kind}) raised {type(exc).__name__}: {exc}")
        finally:
            with self.lock:
                self.finished += 1
                if self.kill_after is not None and self.finished >= self.kill_after:
                    self.finished_event.set()

    def run(self, indexes, kill_after: int | None = None, on_kill=None) -> None:
        self.finished, self.kill_after = 0, kill_after
        self.finished_event.clear()
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            futures = [pool.submit(self.operation, index) for index in indexes]
            if on_kill is not None:
                assert self.finished_event.wait(60), "the load never reached the kill point"
                on_kill()
            done, pending = wait(futures, timeout=120)
            assert not pending, f"{len(pending)} operations did not finish in time"


def server_errors(servers) -> str:
    """The lines of the servers' output that tell of errors (tracebacks' last lines)."""
    lines = [
        line.rstrip()
        for server in servers
        for line in server.lines
        if "Error" in line or "deadlock" in line or "ERROR" in line
    ]
    return "\n".join(lines[-40:]) or "(none)"


def test_two_servers_kill_one_mid_load(cluster, stub):
    # A starts alone; B joins once the runs A will die with are in flight.
    (a,) = cluster.start(1)
    api = api_session()
    assert api.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    # onInterrupt: fail, so the runs A held end failed as interrupted (resuming is tested in
    # test_scale_shared.py and test_scale_resume.py).
    slow_id = create_workflow(
        api, a.url, "load-slow", path="/scale/load-slow", endpoint="slow", activate_via=a.url, on_interrupt="fail"
    )

    # Runs that will be in flight on A when it dies: synchronous ones held inside their
    # executor call (queued runs could be claimed by B's queue worker instead), one of
    # whose clients sees the connection drop and retries on B with the same key.
    orphan_keys = [f"orphan-{number}" for number in range(ORPHANS)]
    held_sync: dict = {}

    def held_call(key: str) -> None:
        try:
            api_session().post(
                f"{a.url}/v1/workflows/{slow_id}/executions",
                json={"inputData": {"amount": 99 if key == "orphan-sync" else int(key.rsplit("-", 1)[1])}},
                headers={"Idempotency-Key": key},
                timeout=60,
            )
            held_sync.setdefault(key, "answered")
        except requests.ConnectionError:
            held_sync.setdefault(key, "dropped")

    orphan_threads = [threading.Thread(target=held_call, args=(key,)) for key in orphan_keys]
    for thread in orphan_threads:
        thread.start()

    def slow_sync_call() -> None:
        held_call("orphan-sync")

    sync_thread = threading.Thread(target=slow_sync_call)
    sync_thread.start()
    wait_for(lambda: stub.service.slow_calls >= ORPHANS + 1, "the slow calls to reach the stub", 30)
    (b,) = cluster.start(1)
    workflow_id = create_workflow(api, a.url, "load", path="/scale/load", activate_via=b.url)
    fleet = Fleet([a.url, b.url])
    load = Load(fleet, workflow_id)

    killed_at = []

    def kill_a() -> None:
        a.kill_hard()
        fleet.replace(0, None)
        killed_at.append(time.monotonic())

    load.run(range(PHASE_ONE_OPERATIONS), kill_after=KILL_AFTER, on_kill=kill_a)
    sync_thread.join(timeout=30)
    for thread in orphan_threads:
        thread.join(timeout=30)
    assert held_sync == dict.fromkeys([*orphan_keys, "orphan-sync"], "dropped"), held_sync
    orphans = [
        row_id for row_id, row in database_report(cluster.url)["executions"].items() if row["key"] in orphan_keys
    ]
    assert len(orphans) == ORPHANS
    # The retry of the dropped request, on B with the same key: the original run (200), not a
    # new one. On a loaded host B's lease sweep may already have failed it.
    response = api.post(
        f"{b.url}/v1/workflows/{slow_id}/executions",
        json={"inputData": {"amount": 99}},
        headers={"Idempotency-Key": "orphan-sync"},
    )
    assert response.status_code == 200 and response.json()["status"] in ("running", "failed"), response.text
    orphans.append(response.json()["executionId"])

    # Once their leases expire, B's lease sweep fails the runs A held (A is not back yet).
    def dead_runs_failed() -> bool:
        executions = database_report(cluster.url)["executions"]
        return all(executions[run_id]["status"] == "failed" for run_id in orphans)

    time.sleep(max(0.0, killed_at[0] + LEASE_SECONDS + 0.5 - time.monotonic()))
    wait_for(dead_runs_failed, "B's lease sweep to fail A's runs", LEASE_SECONDS * 4 + 30, interval=0.2)
    # A comes back on a new port, as a replaced host would, and takes its share of the load.
    (restarted,) = cluster.start(1)
    fleet.replace(0, restarted.url)

    load.run(range(PHASE_ONE_OPERATIONS, PHASE_ONE_OPERATIONS + PHASE_TWO_OPERATIONS))
    servers = (a, b, restarted)
    try:
        wait_for(
            lambda: all(
                row["status"] not in ("queued", "running")
                for row in database_report(cluster.url)["executions"].values()
            ),
            "every run to settle",
            30,
            interval=0.2,
        )
    except AssertionError as exc:
        stuck = [
            i for i, row in database_report(cluster.url)["executions"].items() if row["status"] in ("queued", "running")
        ]
        raise AssertionError(f"{exc}: still running {stuck}; server errors:\n{server_errors(servers)}") from None

    logs = server_errors(servers)
    assert load.unexpected == [], "\n".join(load.unexpected[:20]) + logs
    assert load.connection_errors > 0, "no request met the killed server: the kill was not mid-load"
    report = database_report(cluster.url)
    executions = report["executions"]

    # No lost and no duplicated execution: one id per key, and it is in the database.
    by_key: dict[str, set] = {}
    for record in load.acks:
        by_key.setdefault(record["key"], set()).add(record["id"])
    assert {key: ids for key, ids in by_key.items() if len(ids) != 1} == {}
    assert report["duplicate_keys"] == []
    for key, (execution_id,) in by_key.items():
        assert execution_id in executions, f"acknowledged execution {execution_id} ({key}) is not stored"
        assert executions[execution_id]["key"] == key
    pairs = [key for key in by_key if key.startswith("p-")]
    assert pairs and all(len([r for r in load.acks if r["key"] == key]) == 2 for key in pairs)

    # Every run settled: completed with all its steps and entries (some resumed by B after
    # A died mid-run), or failed as interrupted (the slow workflow's orphans).
    interrupted, resumed = set(), set()
    for execution_id, row in executions.items():
        events = {
            kind: report["events"].get((execution_id, kind), 0)
            for kind in (
                "EXECUTION_STARTED",
                "EXECUTION_COMPLETED",
                "EXECUTION_INTERRUPTED",
                "EXECUTION_RESUMED",
                "STEP_COMPLETED",
                "PROVIDER_CALL_STARTED",
                "PROVIDER_CALL_COMPLETED",
            )
        }
        # Claimed once more per resume.
        assert events["EXECUTION_STARTED"] == 1 + events["EXECUTION_RESUMED"], (execution_id, events)
        if events["EXECUTION_RESUMED"]:
            resumed.add(execution_id)
        if row["status"] == "completed":
            assert report["steps"].get(execution_id) == row["total_steps"] == 3, (execution_id, row)
            assert events["EXECUTION_COMPLETED"] == 1 and events["STEP_COMPLETED"] == 3, (execution_id, events)
            assert events["PROVIDER_CALL_STARTED"] == events["PROVIDER_CALL_COMPLETED"] == 1, (execution_id, events)
        else:
            assert row["status"] == "failed" and (row["error"] or "").startswith("interrupted:"), (execution_id, row)
            assert events["EXECUTION_INTERRUPTED"] == 1, (execution_id, events)
            interrupted.add(execution_id)
    assert set(orphans) <= interrupted, "runs held on the killed server were not recovered"
    for record in load.acks:
        if record["status"] == "completed":
            assert executions[record["id"]]["status"] == "completed", record

    # Configuration changes acknowledged through either server hold, and runs use the new version.
    assert load.config, "no configuration change was acknowledged"
    for change in load.config:
        workflow = report["workflows"][change["workflow_id"]]
        assert (workflow["status"], workflow["version"]) == ("active", 2), (change, workflow)
        for kind in ("WORKFLOW_CREATED", "WORKFLOW_UPDATED", "WORKFLOW_ACTIVATED"):
            assert report["events"].get((change["workflow_id"], kind)) == 1, (change, kind)
    for record in load.acks:
        if record["kind"] == "config-webhook":
            assert executions[record["id"]]["workflow_version"] == 2, record

    assert_one_linear_chain(report)
    print(
        f"\nacknowledged runs: {len(by_key)}, stored: {len(executions)}, interrupted and recovered: "
        f"{len(interrupted)}, resumed: {len(resumed)}, config changes: {len(load.config)}, connection errors: {load.connection_errors}, "
        f"abandoned: {load.abandoned}, audit entries: {report['sequences'][0]}"
    )
