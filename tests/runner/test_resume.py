"""Resume: a run whose owner died continues from its last recorded step (DESIGN 16).

The engine's seed (unit tests), then runs on both backends against a real stub server on
127.0.0.1 that records each call's Idempotency-Key: the owner "dies" in-process at a
chosen point (a BaseException no handler catches, as a kill would leave the database),
its lease expires, and another service resumes the run.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from flowker.audit.chain import Actor, verify_chain
from flowker.local_server import LocalHTTPServer
from flowker.runner.engine import COMPLETED, SKIPPED, Engine, RecordedStep
from flowker.runner.graph import compile_plan
from flowker.runner.resume import ResumeRefused, recorded_steps
from flowker.storage.models import AuditEntry, Execution, StepResult, utcnow

from runner_helpers import make_settings, store_executor, store_workflow

ACTOR = Actor(type="api_key", id="ci-bot", ip="127.0.0.1")


class ProcessDied(BaseException):
    """Stands for a kill: nothing in the service catches it, nothing more is written."""


class DieWhenStarting:
    """An observer that kills the run as ``node_id`` starts (after the recorder's flush check)."""

    def __init__(self, node_id: str):
        self.node_id = node_id

    def step_started(self, node) -> None:
        if node.id == self.node_id:
            raise ProcessDied(node.id)

    def step_finished(self, record) -> None:
        pass


class KeyedStub:
    """The executor's service: answers /one, /two, /three; ``hold`` blocks a path until released."""

    def __init__(self):
        self.hold: dict[str, threading.Event] = {}
        self.arrived: dict[str, threading.Event] = {}

    def __call__(self, request):
        if request.path in self.arrived:
            self.arrived[request.path].set()
        if request.path in self.hold:
            self.hold[request.path].wait(10)
        return 200, {}, {"path": request.path, "n": len(request.path)}


@pytest.fixture
def stub():
    handler = KeyedStub()
    with LocalHTTPServer(handler) as server:
        server.stub = handler
        yield server


def calls(server) -> list[tuple[str, str]]:
    """(path, Idempotency-Key) of every call the stub answered, in order."""
    return [(request.path, request.header("Idempotency-Key")) for request in server.requests]


def chain_spec(name: str, *, third_call: bool = False) -> dict:
    """start -> one -> two [-> three] -> check (conditional) -> out (true) | other (false)."""
    nodes = [
        {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
        {"id": "one", "type": "executor", "data": {"executor": "svc", "endpoint": "one", "body": {"x": 1}}},
        {
            "id": "two",
            "type": "executor",
            "data": {"executor": "svc", "endpoint": "two", "body": {"from": "${{ nodes.one.body.path }}"}},
        },
    ]
    edges = [{"source": "start", "target": "one"}, {"source": "one", "target": "two"}]
    last = "two"
    if third_call:
        nodes.append({"id": "three", "type": "executor", "data": {"executor": "svc", "endpoint": "three"}})
        edges.append({"source": "two", "target": "three"})
        last = "three"
    nodes += [
        {
            "id": "shape",
            "type": "action",
            "data": {"actionType": "transform", "values": {"n": "${{ nodes.two.body.n }}"}},
        },
        {"id": "check", "type": "conditional", "data": {"condition": "nodes.shape.n == 4"}},
        {
            "id": "out",
            "type": "action",
            "data": {
                "actionType": "set_output",
                "output": {"one": "${{ nodes.one.body.path }}", "n": "${{ nodes.shape.n }}"},
            },
        },
        {"id": "other", "type": "action", "data": {"actionType": "set_output", "output": {"wrong": True}}},
    ]
    edges += [
        {"source": last, "target": "shape"},
        {"source": "shape", "target": "check"},
        {"source": "check", "target": "out", "sourceHandle": "true"},
        {"source": "check", "target": "other", "sourceHandle": "false"},
    ]
    return {"name": name, "nodes": nodes, "edges": edges}


def store_service_executor(base_url: str) -> None:
    store_executor(
        "svc",
        base_url,
        [{"name": path, "path": f"/{path}", "method": "POST"} for path in ("one", "two", "three")],
        authentication={"type": "none"},
    )


def expire_lease(execution_id: str, owner: str = "dead-host:1:abc") -> None:
    Execution.update(owner=owner, lease_expires_at=utcnow() - dt.timedelta(seconds=5)).where(
        Execution.id == execution_id
    ).execute()


def step_rows(execution_id: str) -> list[tuple[int, str, str]]:
    query = StepResult.select().where(StepResult.execution == execution_id).order_by(StepResult.step_number)
    return [(row.step_number, row.node_id, row.status) for row in query]


def events(execution_id: str) -> list[str]:
    query = AuditEntry.select().where(AuditEntry.resource_id == execution_id).order_by(AuditEntry.sequence)
    return [entry.event_type for entry in query]


@pytest.fixture
def db_settings(database, database_url):
    return make_settings(database_url)


# -- the engine's seed ----------------------------------------------------------------


class ListSink:
    def __init__(self):
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []

    def step_started(self, node) -> None:
        self.started.append(node.id)

    def step_finished(self, record) -> None:
        self.finished.append((record.node.id, record.status))


def _no_executors(reference):
    raise AssertionError(f"no executor may be called, asked for {reference}")


def branch_spec() -> dict:
    return {
        "name": "branches",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "calc", "type": "action", "data": {"actionType": "transform", "values": {"v": "${{ workflow.v }}"}}},
            {"id": "big", "type": "conditional", "data": {"condition": "nodes.calc.v > 10"}},
            {
                "id": "yes",
                "type": "action",
                "data": {"actionType": "transform", "values": {"w": "${{ nodes.calc.v }}"}},
            },
            {"id": "no", "type": "action", "data": {"actionType": "transform", "values": {"w": 0}}},
            {
                "id": "out",
                "type": "action",
                "data": {"actionType": "set_output", "output": {"w": "${{ has(nodes.yes) }}"}},
            },
        ],
        "edges": [
            {"source": "start", "target": "calc"},
            {"source": "calc", "target": "big"},
            {"source": "big", "target": "yes", "sourceHandle": "true"},
            {"source": "big", "target": "no", "sourceHandle": "false"},
            {"source": "yes", "target": "out"},
            {"source": "no", "target": "out"},
        ],
    }


def _engine(plan, seed, sink, input_data=None):
    return Engine(
        plan,
        execution_id="e-1",
        input_data=input_data or {"v": 1},
        deadline=10**9,
        resolve_executor=_no_executors,
        sink=sink,
        seed=seed,
    )


def test_seeded_steps_are_not_run_again_and_their_outputs_feed_later_ones(registry):
    plan = compile_plan(branch_spec(), registry)
    seed = {
        "start": RecordedStep("start", 1, COMPLETED, output={"v": 1}),
        # Recorded as 50 although the input says 1: the recorded value wins.
        "calc": RecordedStep("calc", 2, COMPLETED, output={"v": 50}, duration_ms=7.0),
        # The recorded branch is taken again, whatever the condition would say now.
        "big": RecordedStep("big", 3, COMPLETED, output={"result": True}),
    }
    sink = ListSink()
    outcome = _engine(plan, seed, sink).run()
    assert outcome.status == COMPLETED
    assert sink.started == ["yes", "out"]
    assert sink.finished == [("yes", COMPLETED), ("no", SKIPPED), ("out", COMPLETED)]
    assert [step.reused for step in outcome.steps] == [True, True, True, False, False, False]
    assert outcome.steps[3].output == {"w": 50} and outcome.final_output == {"w": True}


def test_a_seeded_final_output_is_set_again(registry):
    plan = compile_plan(branch_spec(), registry)
    seed = {
        node.id: RecordedStep(node.id, node.step_number, SKIPPED if node.id == "yes" else COMPLETED, output={"w": 0})
        for node in plan.nodes
        if node.id != "out"
    }
    seed["big"] = RecordedStep("big", 3, COMPLETED, output={"result": False})
    seed["out"] = RecordedStep("out", 6, COMPLETED, output={"w": False}, sets_final_output=True, final_output={"w": 1})
    sink = ListSink()
    outcome = _engine(plan, seed, sink).run()
    assert sink.started == [] and sink.finished == []
    assert outcome.status == COMPLETED and outcome.final_output == {"w": 1}
    # Without the final output on record, the map of node outputs (as a fresh run would).
    seed["out"] = RecordedStep("out", 6, COMPLETED, output={"w": False})
    assert _engine(plan, seed, ListSink()).run().final_output["out"] == {"w": False}


def test_a_seeded_failure_fails_the_run_and_skips_the_rest(registry):
    plan = compile_plan(branch_spec(), registry)
    seed = {
        "start": RecordedStep("start", 1, COMPLETED, output={}),
        "calc": RecordedStep("calc", 2, "failed", error="boom"),
    }
    sink = ListSink()
    outcome = _engine(plan, seed, sink).run()
    assert outcome.status == "failed" and outcome.failed_node == "calc" and "boom" in outcome.error_message
    assert sink.started == [] and [status for _, status in sink.finished] == [SKIPPED] * 4


def test_set_output_steps_record_that_they_set_the_final_output(registry):
    plan = compile_plan(branch_spec(), registry)
    outcome = _engine(plan, None, ListSink(), {"v": 20}).run()
    out = outcome.steps[-1]
    assert out.input == {"actionType": "set_output", "setsFinalOutput": True}
    assert outcome.steps[1].input == {"actionType": "transform"}


def test_recorded_rows_that_do_not_fit_the_version_are_refused(db_settings, registry):
    spec = branch_spec()
    workflow = store_workflow(spec)
    plan = compile_plan(spec, registry, workflow_id=workflow.id, version=1)
    execution = Execution.create(
        workflow_id=workflow.id, workflow_version=1, status="running", total_steps=6, started_at=utcnow()
    )

    def row(number, node_id, node_type, output, **extra):
        now = utcnow()
        StepResult.create(
            execution=execution.id,
            step_number=number,
            node_id=node_id,
            node_name=node_id,
            node_type=node_type,
            status="completed",
            output=output,
            started_at=now,
            completed_at=now,
            **extra,
        )

    row(1, "start", "trigger", {})
    row(2, "calc", "action", {"v": 3}, input_data={"actionType": "set_output"})  # an old row: no flag
    seed = recorded_steps(execution.id, plan)
    assert seed["calc"].sets_final_output and seed["calc"].final_output == {"v": 3}
    row(3, "big", "conditional", {"result": "yes"})
    with pytest.raises(ResumeRefused, match="no boolean result"):
        recorded_steps(execution.id, plan)
    StepResult.delete().where(StepResult.step_number == 3).execute()
    row(3, "no", "action", {})
    with pytest.raises(ResumeRefused, match="does not fit version 1"):
        recorded_steps(execution.id, plan)


# -- a dead owner's run, resumed by another service -------------------------------------


def test_a_call_answered_but_not_yet_committed_is_sent_again_with_the_same_key(service_factory, db_settings, stub):
    """The 0.25 s flush window: `two` answered, its record pending when the owner died."""
    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("window"))
    first = service_factory(db_settings)
    execution = first.start(workflow.id, {}, actor=ACTOR).execution
    with pytest.raises(ProcessDied):
        first.run(execution.id, observer=DieWhenStarting("shape"))
    key = f"{execution.id}:two"
    assert calls(stub) == [("/one", f"{execution.id}:one"), ("/two", key)]
    assert step_rows(execution.id) == [(1, "start", "completed"), (2, "one", "completed")]
    assert Execution.get_by_id(execution.id).status == "running"

    expire_lease(execution.id)
    resumed = service_factory(db_settings).run(execution.id)
    assert resumed.status == "completed", resumed.error_message
    assert resumed.final_output == {"one": "/one", "n": 4}
    # `one` (on record) is not called again; `two` (answered, not on record) is, with its key.
    assert calls(stub) == [("/one", f"{execution.id}:one"), ("/two", key), ("/two", key)]
    assert [node for _, node, _ in step_rows(execution.id)] == ["start", "one", "two", "shape", "check", "out", "other"]
    assert Execution.get_by_id(execution.id).current_step == 7
    kinds = events(execution.id)
    assert kinds.count("STEP_COMPLETED") == 6 and kinds.count("STEP_SKIPPED") == 1
    assert kinds.count("PROVIDER_CALL_STARTED") == 2  # one's and the resumed two's: each on record once
    assert kinds[-1] == "EXECUTION_COMPLETED"
    completed = AuditEntry.get(
        (AuditEntry.resource_id == execution.id) & (AuditEntry.event_type == "EXECUTION_COMPLETED")
    )
    assert '"steps":7' in completed.canonical
    assert verify_chain().is_valid


def test_a_run_that_died_before_any_commit_starts_over(service_factory, db_settings, stub):
    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("nothing-committed"))
    first = service_factory(db_settings)
    execution = first.start(workflow.id, {}, actor=ACTOR).execution
    with pytest.raises(ProcessDied):
        first.run(execution.id, observer=DieWhenStarting("one"))
    assert step_rows(execution.id) == [] and calls(stub) == []
    expire_lease(execution.id)
    assert service_factory(db_settings).run(execution.id).status == "completed"
    assert [path for path, _ in calls(stub)] == ["/one", "/two"]
    assert len(step_rows(execution.id)) == 7


def test_an_owner_that_lost_its_lease_writes_nothing_more(service_factory, db_settings, stub):
    """A stalled owner whose run was taken over: its next commit is refused, its next
    call is never sent, and its end is not written."""
    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("zombie", third_call=True))
    zombie = service_factory(db_settings)
    execution = zombie.start(workflow.id, {}, actor=ACTOR).execution
    stub.stub.hold["/two"] = threading.Event()
    stub.stub.arrived["/two"] = threading.Event()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("run", zombie.run(execution.id)))
    thread.start()
    try:
        assert stub.stub.arrived["/two"].wait(10)
        Execution.update(owner="new-owner:2:def").where(Execution.id == execution.id).execute()
    finally:
        stub.stub.hold["/two"].set()
        thread.join(15)
    assert not thread.is_alive()
    assert result["run"].status == "running" and result["run"].owner == "new-owner:2:def"
    assert [path for path, _ in calls(stub)] == ["/one", "/two"]  # /three never sent
    assert step_rows(execution.id) == [(1, "start", "completed"), (2, "one", "completed")]
    assert "EXECUTION_FAILED" not in events(execution.id)


# -- through the queue: recovery puts it back, another worker claims and resumes it ------


def _claim_and_run(service):
    from flowker.queue.claim import claim

    claimed = claim(service, limit=5)
    assert len(claimed.executions) == 1, claimed
    return service.run_claimed(claimed.executions[0])


def test_recovery_queues_a_dead_owners_run_and_a_worker_resumes_it(service_factory, db_settings, stub):
    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("requeued"))
    first = service_factory(db_settings)
    execution = first.start(workflow.id, {}, actor=ACTOR).execution
    with pytest.raises(ProcessDied):
        first.run(execution.id, observer=DieWhenStarting("shape"))
    started_at = Execution.get_by_id(execution.id).started_at
    expire_lease(execution.id, owner=first.owner)

    worker = service_factory(db_settings)
    recovered = worker.recover_interrupted()
    assert recovered.resumed == [execution.id] and recovered.failed == []
    resumed = _claim_and_run(worker)
    assert resumed.status == "completed" and resumed.final_output == {"one": "/one", "n": 4}
    row = Execution.get_by_id(execution.id)
    assert row.resumes == 1 and row.owner == worker.owner and row.started_at == started_at
    key = f"{execution.id}:two"
    assert calls(stub) == [("/one", f"{execution.id}:one"), ("/two", key), ("/two", key)]
    kinds = events(execution.id)
    assert kinds[:8] == [
        "EXECUTION_STARTED",
        "STEP_COMPLETED",  # start
        "PROVIDER_CALL_STARTED",
        "PROVIDER_CALL_COMPLETED",
        "STEP_COMPLETED",  # one, with its call: on record before the owner died
        "EXECUTION_RESUMED",
        "EXECUTION_STARTED",  # claimed by the worker
        "PROVIDER_CALL_STARTED",  # two, sent again
    ]
    assert kinds[-1] == "EXECUTION_COMPLETED" and kinds.count("STEP_COMPLETED") == 6
    resumed_entry = AuditEntry.get(
        (AuditEntry.resource_id == execution.id) & (AuditEntry.event_type == "EXECUTION_RESUMED")
    )
    assert f'"previousOwner":"{first.owner}"' in resumed_entry.canonical
    assert verify_chain().is_valid


def test_on_interrupt_fail_keeps_failing_the_run(service_factory, db_settings, stub):
    store_service_executor(stub.url)
    workflow = store_workflow({**chain_spec("fails-on-interrupt"), "onInterrupt": "fail"})
    first = service_factory(db_settings)
    execution = first.start(workflow.id, {}, actor=ACTOR).execution
    with pytest.raises(ProcessDied):
        first.run(execution.id, observer=DieWhenStarting("shape"))
    expire_lease(execution.id)
    worker = service_factory(db_settings)
    recovered = worker.recover_interrupted()
    assert recovered.failed == [execution.id] and recovered.resumed == []
    row = Execution.get_by_id(execution.id)
    assert row.status == "failed" and row.error_message.startswith("interrupted:") and row.resumes == 0
    from flowker.queue.claim import claim

    assert claim(worker, limit=5).executions == []
    assert [path for path, _ in calls(stub)] == ["/one", "/two"]
    assert events(execution.id)[-1] == "EXECUTION_INTERRUPTED"


def test_a_run_that_keeps_killing_its_workers_is_failed_after_the_resume_limit(service_factory, db_settings, stub):
    from flowker.runner.recovery import RESUME_LIMIT

    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("poison"))
    first = service_factory(db_settings)
    execution = first.start(workflow.id, {}, actor=ACTOR).execution
    worker = service_factory(db_settings)
    for resumes in range(RESUME_LIMIT + 1):
        expire_lease(execution.id)
        recovered = worker.recover_interrupted()
        if resumes < RESUME_LIMIT:
            assert recovered.resumed == [execution.id]
            from flowker.queue.claim import claim

            assert [e.id for e in claim(worker).executions] == [execution.id]  # and dies again
        else:
            assert recovered.failed == [execution.id]
    row = Execution.get_by_id(execution.id)
    assert row.status == "failed" and row.resumes == RESUME_LIMIT
    entry = AuditEntry.get(
        (AuditEntry.resource_id == execution.id) & (AuditEntry.event_type == "EXECUTION_INTERRUPTED")
    )
    assert f"after {RESUME_LIMIT} resumes" in entry.canonical


def test_a_resumed_runs_deadline_counts_its_recorded_steps_not_its_downtime(service_factory, db_settings, stub):
    store_service_executor(stub.url)
    workflow = store_workflow(chain_spec("deadline"))
    settings = db_settings.replace(execution_timeout_seconds=30)

    def died_after_one(recorded_ms: int, started_ago: dt.timedelta) -> str:
        first = service_factory(settings)
        execution = first.start(workflow.id, {}, actor=ACTOR).execution
        with pytest.raises(ProcessDied):
            first.run(execution.id, observer=DieWhenStarting("two"))
        StepResult.update(duration_ms=recorded_ms).where(
            (StepResult.execution == execution.id) & (StepResult.node_id == "one")
        ).execute()
        Execution.update(started_at=utcnow() - started_ago, resumes=1).where(Execution.id == execution.id).execute()
        expire_lease(execution.id)
        return execution.id

    # Dead for an hour, 1 s of steps on record: 29 s left, the run completes.
    long_dead = died_after_one(1000, dt.timedelta(hours=1))
    assert service_factory(settings).run(long_dead).status == "completed"
    # 30 s of steps on record: nothing left, the next step fails on the deadline (FLK-0504).
    spent = died_after_one(30_000, dt.timedelta(seconds=31))
    ended = service_factory(settings).run(spent)
    assert ended.status == "failed" and "deadline" in ended.error_message
    two = StepResult.get((StepResult.execution == spent) & (StepResult.node_id == "two"))
    assert two.status == "failed" and two.attempts == 1
    assert ("/two", f"{spent}:two") not in calls(stub)
