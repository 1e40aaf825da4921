"""Execution records on both backends: rows, audit entries, snapshots, idempotency, leases."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from flowker.audit.chain import Actor, verify_chain
from flowker.errors import NotFound, UnprocessableEntity
from flowker.api.views import execution_results, execution_summary
from flowker.storage.models import AuditEntry, Execution, StepResult, WorkflowVersion, utcnow

from runner_helpers import BEARER_TOKEN, make_settings, store_executor, store_workflow

ACTOR = Actor(type="api_key", id="ci-bot", ip="127.0.0.1")


@pytest.fixture
def db_settings(database, database_url):
    return make_settings(database_url)


@pytest.fixture
def db_service(service_factory, db_settings):
    return service_factory(db_settings)


def simple_spec(name="records", base_url=None):
    nodes = [
        {"id": "start", "type": "trigger", "name": "Begin", "data": {"triggerType": "manual"}},
        {
            "id": "double",
            "type": "action",
            "data": {"actionType": "transform", "values": {"v": "${{ workflow.n * 2 }}"}},
        },
    ]
    edges = [{"source": "start", "target": "double"}]
    if base_url:
        nodes.append(
            {
                "id": "call",
                "type": "executor",
                "name": "Call service",
                "data": {"executor": "svc", "endpoint": "op", "body": {"v": "${{ nodes.double.v }}"}},
            }
        )
        edges.append({"source": "double", "target": "call"})
    nodes.append(
        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"v": "${{ nodes.double.v }}"}}}
    )
    edges.append({"source": "call" if base_url else "double", "target": "out"})
    return {"name": name, "nodes": nodes, "edges": edges}


def test_a_run_stores_its_execution_steps_and_audit_trail(db_service, http_server, token_env):
    store_executor("svc", http_server.url, [{"name": "op", "path": "/op", "method": "POST"}])
    http_server.recorder.set((500, {}, {}), (200, {}, {"accepted": True}))
    workflow = store_workflow(simple_spec(base_url=http_server.url))
    started = db_service.start(workflow.id, {"n": 21}, actor=ACTOR)
    assert started.created and started.execution.status == "running"
    assert started.execution.total_steps == 4 and started.execution.owner == db_service.owner

    execution = db_service.run(started.execution.id)
    assert execution.status == "completed" and execution.final_output == {"v": 42}
    assert execution.current_step == 4 and execution.completed_at is not None
    assert execution.lease_expires_at is None

    steps = list(StepResult.select().where(StepResult.execution == execution.id).order_by(StepResult.step_number))
    assert [(s.step_number, s.node_id, s.status) for s in steps] == [
        (1, "start", "completed"),
        (2, "double", "completed"),
        (3, "call", "completed"),
        (4, "out", "completed"),
    ]
    assert steps[0].node_name == "Begin" and steps[1].node_name == "double"
    call = steps[2]
    assert call.node_type == "executor" and call.attempts == 2
    assert call.input_data["body"] == {"v": 42} and call.output["body"] == {"accepted": True}
    assert call.call_details["statusCode"] == 200 and call.call_details["url"].endswith("/op")
    assert [a["statusCode"] for a in call.call_details["attemptLog"]] == [500, 200]
    assert all(s.completed_at >= s.started_at for s in steps)

    entries = list(AuditEntry.select().order_by(AuditEntry.sequence))
    assert [e.event_type for e in entries] == [
        "EXECUTION_STARTED",
        "STEP_COMPLETED",
        "STEP_COMPLETED",
        "PROVIDER_CALL_STARTED",
        "PROVIDER_CALL_FAILED",
        "PROVIDER_CALL_STARTED",
        "PROVIDER_CALL_COMPLETED",
        "STEP_COMPLETED",
        "STEP_COMPLETED",
        "EXECUTION_COMPLETED",
    ]
    assert entries[0].actor_id == "ci-bot" and all(e.resource_id == execution.id for e in entries)
    assert all(BEARER_TOKEN not in e.canonical for e in entries)
    assert verify_chain().is_valid

    summary = execution_summary(execution)
    assert summary["status"] == "completed" and summary["currentStepNumber"] == summary["totalSteps"] == 4
    assert summary["startedAt"].endswith("Z") and "errorMessage" not in summary
    results = execution_results(execution)
    assert [r["nodeId"] for r in results["stepResults"]] == ["start", "double", "call", "out"]
    assert results["finalOutput"] == {"v": 42} and results["stepResults"][2]["attempts"] == 2
    json.dumps(results)  # JSON-ready


def test_a_failed_run_is_recorded_as_failed(db_service):
    spec = simple_spec("failing")
    spec["nodes"][1]["data"]["values"]["v"] = "${{ workflow.absent + 1 }}"
    workflow = store_workflow(spec)
    execution = db_service.execute(workflow.id, {"n": 1}, actor=ACTOR).execution
    assert execution.status == "failed" and "'double'" in execution.error_message
    statuses = [
        s.status
        for s in StepResult.select().where(StepResult.execution == execution.id).order_by(StepResult.step_number)
    ]
    assert statuses == ["completed", "failed", "skipped"]
    last = AuditEntry.select().order_by(AuditEntry.sequence.desc()).get()
    assert last.event_type == "EXECUTION_FAILED" and last.result == "FAILED"
    assert execution_summary(execution)["errorMessage"] == execution.error_message


def test_start_refuses_missing_and_inactive_workflows(db_service):
    with pytest.raises(NotFound) as missing:
        db_service.start("00000000-0000-0000-0000-000000000000", {}, actor=ACTOR)
    assert missing.value.code == "FLK-0100"
    draft = store_workflow(simple_spec("draft-one"), status="draft")
    with pytest.raises(UnprocessableEntity) as inactive:
        db_service.start(draft.id, {}, actor=ACTOR)
    assert inactive.value.code == "FLK-0501"
    assert Execution.select().count() == 0


def test_runs_use_the_snapshot_they_started_with(db_service):
    from flowker.storage.models import Workflow

    workflow = store_workflow(simple_spec("snapshots"))
    started = db_service.start(workflow.id, {"n": 5}, actor=ACTOR)
    changed = simple_spec("snapshots")
    changed["nodes"][-1]["data"]["output"] = {"v": "changed"}
    Workflow.update(version=2, spec=changed).where(Workflow.id == workflow.id).execute()
    WorkflowVersion.create(workflow_id=workflow.id, version=2, spec=changed)
    assert db_service.run(started.execution.id).final_output == {"v": 10}
    assert db_service.execute(workflow.id, {"n": 5}, actor=ACTOR).execution.final_output == {"v": "changed"}


def test_idempotency_key_returns_the_first_execution(db_service):
    workflow = store_workflow(simple_spec("idempotent"))
    first = db_service.execute(workflow.id, {"n": 1}, actor=ACTOR, idempotency_key="key-1")
    again = db_service.execute(workflow.id, {"n": 1}, actor=ACTOR, idempotency_key="key-1")
    assert first.created and not again.created
    assert again.execution.id == first.execution.id and again.execution.status == "completed"
    with pytest.raises(UnprocessableEntity) as mismatch:
        db_service.start(workflow.id, {"n": 2}, actor=ACTOR, idempotency_key="key-1")
    assert mismatch.value.code == "FLK-0508"
    assert Execution.select().count() == 1
    other = db_service.execute(workflow.id, {"n": 1}, actor=ACTOR, idempotency_key="key-2")
    assert other.created and other.execution.id != first.execution.id
    started = AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_STARTED").count()
    assert started == 2


def test_concurrent_starts_with_one_key_give_one_execution(db_service, database):
    workflow = store_workflow(simple_spec("race"))
    barrier = threading.Barrier(6)
    results, errors = [], []

    def start():
        try:
            barrier.wait(5)
            with database.connection_context():
                results.append(db_service.start(workflow.id, {"n": 3}, actor=ACTOR, idempotency_key="same"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len({r.execution.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Execution.select().count() == 1


def test_recovery_settles_expired_leases_only(db_service, service_factory, db_settings):
    workflow = store_workflow(simple_spec("leases"))
    failing = store_workflow({**simple_spec("leases-fail"), "onInterrupt": "fail"})
    resumable = db_service.start(workflow.id, {"n": 1}, actor=ACTOR).execution
    dead = db_service.start(failing.id, {"n": 1}, actor=ACTOR).execution
    live = db_service.start(workflow.id, {"n": 2}, actor=ACTOR).execution
    Execution.update(owner="gone-host:1:abc", lease_expires_at=utcnow() - dt.timedelta(seconds=5)).where(
        Execution.id.in_([dead.id, resumable.id])
    ).execute()

    restarted = service_factory(db_settings)  # a new process starting up
    recovered = restarted.recover_interrupted()
    assert (recovered.resumed, recovered.failed) == ([resumable.id], [dead.id])
    # The default: back in the queue for a worker, the dead owner named in the audit entry.
    queued = Execution.get_by_id(resumable.id)
    assert (queued.status, queued.owner, queued.lease_expires_at, queued.resumes) == ("queued", None, None, 1)
    assert queued.queued_at is not None and queued.completed_at is None
    entry = AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_RESUMED").get()
    assert entry.resource_id == resumable.id and entry.result == "SUCCESS"
    assert json.loads(entry.canonical)["payload"]["metadata"]["previousOwner"] == "gone-host:1:abc"
    # onInterrupt: fail keeps the old rule.
    dead = Execution.get_by_id(dead.id)
    assert dead.status == "failed" and "interrupted" in dead.error_message and dead.completed_at is not None
    assert Execution.get_by_id(live.id).status == "running"
    entry = AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_INTERRUPTED").get()
    assert entry.resource_id == dead.id and entry.result == "FAILED"
    assert "onInterrupt: fail" in entry.canonical
    assert len(restarted.recover_interrupted()) == 0  # nothing twice
    # The live one is still ours to finish; a failed one is not run again, a queued one
    # waits for a worker's claim.
    assert db_service.run(live.id).status == "completed"
    assert db_service.run(dead.id).status == "failed"
    assert db_service.run(resumable.id).status == "queued"
    assert verify_chain().is_valid


def test_a_live_service_sweeps_expired_leases_and_spares_live_ones(service_factory, db_settings):
    import time

    service = service_factory(db_settings, lease_seconds=0.6)  # sweeps every 0.3 s, heartbeat every 0.2 s
    workflow = store_workflow(simple_spec("sweeps"))
    dead = service.start(workflow.id, {"n": 1}, actor=ACTOR).execution
    live = service.start(workflow.id, {"n": 2}, actor=ACTOR).execution
    Execution.update(owner="gone-host:1:abc", lease_expires_at=utcnow() - dt.timedelta(seconds=5)).where(
        Execution.id == dead.id
    ).execute()
    service.heartbeat.track(live.id)  # as a run in progress is
    try:
        service.start_sweeping()
        deadline = time.monotonic() + 10
        while Execution.get_by_id(dead.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Execution.get_by_id(dead.id).status == "queued"  # for a worker to resume
        time.sleep(1.5)  # five more sweeps, two and a half leases
        assert Execution.get_by_id(live.id).status == "running"
    finally:
        service.heartbeat.untrack(live.id)
    assert service.sweeper.recovered == 1
    resumed = AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_RESUMED")
    assert [entry.resource_id for entry in resumed] == [dead.id]
    assert service.run(live.id).status == "completed"


def test_heartbeat_extends_the_lease(service_factory, db_settings):
    service = service_factory(db_settings, lease_seconds=30)
    workflow = store_workflow(simple_spec("heartbeat"))
    execution = service.start(workflow.id, {"n": 1}, actor=ACTOR).execution
    Execution.update(lease_expires_at=utcnow() + dt.timedelta(seconds=1)).where(Execution.id == execution.id).execute()
    service.heartbeat.track(execution.id)
    try:
        assert service.heartbeat.beat() == 1
    finally:
        service.heartbeat.untrack(execution.id)
    lease = Execution.get_by_id(execution.id).lease_expires_at
    assert lease > utcnow() + dt.timedelta(seconds=25)


def test_another_process_does_not_run_a_leased_execution(service_factory, db_settings, db_service):
    workflow = store_workflow(simple_spec("owned"))
    execution = db_service.start(workflow.id, {"n": 1}, actor=ACTOR).execution
    other = service_factory(db_settings)
    assert other.run(execution.id).status == "running"  # leased by db_service: left alone
    assert StepResult.select().count() == 0
    assert db_service.run(execution.id).status == "completed"


class CommittedSteps:
    """An observer that notes, as each step starts, which step rows are already committed
    (the recorder writes rows only when it commits, so a row that exists is committed)."""

    def __init__(self, execution_id):
        self.execution_id = execution_id
        self.seen: dict[str, list[str]] = {}

    def step_started(self, node):
        rows = StepResult.select(StepResult.node_id).where(StepResult.execution == self.execution_id)
        self.seen[node.id] = sorted(row.node_id for row in rows)

    def step_finished(self, record):
        pass


def two_call_spec():
    call = {"executor": "svc", "endpoint": "op", "body": {"n": "${{ workflow.n }}"}}
    nodes = [
        {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
        {"id": "call1", "type": "executor", "data": call},
        {"id": "act", "type": "action", "data": {"actionType": "transform", "values": {"v": 1}}},
        {"id": "call2", "type": "executor", "data": call},
        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"v": 2}}},
    ]
    edges = [
        {"source": a, "target": b}
        for a, b in [("start", "call1"), ("call1", "act"), ("act", "call2"), ("call2", "out")]
    ]
    return {"name": "two-calls", "nodes": nodes, "edges": edges}


def run_two_calls(service, http_server):
    """Run :func:`two_call_spec` against ``http_server``; returns (execution, observer)."""
    store_executor("svc", http_server.url, [{"name": "op", "path": "/op", "method": "POST"}])
    http_server.recorder.set((200, {}, {"ok": True}))
    workflow = store_workflow(two_call_spec())
    started = service.start(workflow.id, {"n": 1}, actor=ACTOR)
    observer = CommittedSteps(started.execution.id)
    execution = service.run(started.execution.id, observer=observer)
    assert execution.status == "completed", execution.error_message
    return execution, observer


def test_a_calls_record_is_committed_before_the_next_call_and_the_rest_with_the_end(db_service, http_server, token_env):
    execution, observer = run_two_calls(db_service, http_server)
    # Nothing is committed before the first call; everything up to it before the second
    # call goes out; the second call's record commits with the actions after it and the end.
    assert observer.seen == {
        "start": [],
        "call1": [],
        "act": [],
        "call2": ["act", "call1", "start"],
        "out": ["act", "call1", "start"],
    }
    steps = StepResult.select().where(StepResult.execution == execution.id)
    assert sorted(s.node_id for s in steps) == ["act", "call1", "call2", "out", "start"]
    kinds = [e.event_type for e in AuditEntry.select().order_by(AuditEntry.sequence)]
    assert kinds.count("PROVIDER_CALL_COMPLETED") == 2 and kinds[-1] == "EXECUTION_COMPLETED"
    assert verify_chain().is_valid


def test_pending_steps_commit_once_the_flush_interval_passes(service_factory, db_settings, http_server, token_env):
    _, observer = run_two_calls(service_factory(db_settings, flush_interval=0.0), http_server)
    # With no wait allowed, every step is committed as it finishes.
    assert observer.seen == {
        "start": [],
        "call1": ["start"],
        "act": ["call1", "start"],
        "call2": ["act", "call1", "start"],
        "out": ["act", "call1", "call2", "start"],
    }
