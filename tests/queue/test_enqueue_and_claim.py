"""The queue's foundation on each backend: ``ExecutionService.enqueue`` writes a queued
execution with its EXECUTION_QUEUED entry; a claim moves the oldest to running with its
EXECUTION_STARTED entry, respects a workflow's ``concurrency``, and ``run_claimed`` runs it."""

from __future__ import annotations

import pytest

from flowker.audit.verify import verify_database
from flowker.errors import InputValidationError, UnprocessableEntity
from flowker.queue.claim import claim
from flowker.queue.depth import queue_depth
from flowker.storage.models import AuditEntry, Execution, Workflow, WorkflowVersion


def _spec(name: str, **top) -> dict:
    return {
        "name": name,
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "manual", "inputSchema": {"type": "object", "required": ["n"]}},
            },
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"n": "${{ workflow.n }}"}}},
        ],
        "edges": [{"source": "start", "target": "out"}],
        **top,
    }


def _store(spec: dict, status: str = "active") -> Workflow:
    workflow = Workflow.create(name=spec["name"], status=status, version=1, spec=spec, spec_hash="x")
    WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
    return workflow


def _events(execution_id: str) -> list[str]:
    return [
        row.event_type
        for row in AuditEntry.select().where(AuditEntry.resource_id == execution_id).order_by(AuditEntry.sequence)
    ]


def test_enqueue_writes_a_queued_execution_and_its_entry(service, database):
    workflow = _store(_spec("queued-one"))
    started = service.enqueue(workflow.id, {"n": 1}, actor=None, trace_parent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert started.created
    row = Execution.get_by_id(started.execution.id)
    assert (row.status, row.owner, row.lease_expires_at, row.resumes) == ("queued", None, None, 0)
    assert row.queued_at is not None and row.trace_parent.startswith("00-aaaa")
    assert _events(row.id) == ["EXECUTION_QUEUED"]
    assert queue_depth(database)[0] == 1

    again = service.enqueue(workflow.id, {"n": 1}, actor=None, idempotency_key="k1")
    replay = service.enqueue(workflow.id, {"n": 1}, actor=None, idempotency_key="k1")
    assert again.created and not replay.created and replay.execution.id == again.execution.id
    with pytest.raises(UnprocessableEntity):
        service.enqueue(workflow.id, {"n": 2}, actor=None, idempotency_key="k1")
    with pytest.raises(InputValidationError):
        service.enqueue(workflow.id, {}, actor=None)
    assert Execution.select().count() == 2


def test_an_inactive_workflow_is_refused_unless_a_version_is_named(service):
    workflow = _store(_spec("inactive-one"), status="inactive")
    with pytest.raises(UnprocessableEntity):
        service.enqueue(workflow.id, {"n": 1}, actor=None)
    retried = service.enqueue(workflow.id, {"n": 1}, actor=None, workflow_version=1, retry_of="x" * 36)
    assert retried.execution.retry_of == "x" * 36 and retried.execution.status == "queued"


def test_a_claim_takes_the_oldest_runs_it_and_the_chain_verifies(service, database):
    workflow = _store(_spec("claimed"))
    ids = [service.enqueue(workflow.id, {"n": n}, actor=None).execution.id for n in range(3)]
    first = claim(service, 2)
    assert [e.id for e in first.executions] == ids[:2]
    for execution in first.executions:
        assert execution.status == "running" and execution.owner == service.owner
        done = service.run_claimed(execution)
        assert done.status == "completed", done.error_message
    assert _events(ids[0]) == [
        "EXECUTION_QUEUED",
        "EXECUTION_STARTED",
        "STEP_COMPLETED",
        "STEP_COMPLETED",
        "EXECUTION_COMPLETED",
    ]
    assert Execution.get_by_id(ids[2]).status == "queued"
    assert claim(service, 5).executions[0].id == ids[2]
    assert claim(service, 5).executions == []
    assert verify_database(database).is_valid


def test_a_claim_respects_the_workflow_concurrency(service):
    limited = _store(_spec("limited", concurrency=2))
    free = _store(_spec("free"))
    for n in range(4):
        service.enqueue(limited.id, {"n": n}, actor=None)
    free_ids = [service.enqueue(free.id, {"n": n}, actor=None).execution.id for n in range(2)]
    taken = claim(service, 10).executions
    assert sorted(e.workflow_id for e in taken) == sorted([limited.id] * 2 + [free.id] * 2)
    assert {e.id for e in taken} >= set(free_ids)
    assert claim(service, 10).executions == []  # the limited workflow is at its limit
    service.run_claimed(next(e for e in taken if e.workflow_id == limited.id))
    assert [e.workflow_id for e in claim(service, 10).executions] == [limited.id]


def test_the_spec_fields_reach_the_plan_and_bad_values_are_refused(registry):
    from flowker.runner.graph import compile_plan
    from flowker.validation.checks import validate_body

    spec = _spec("fields", concurrency=3, onInterrupt="fail")
    spec["nodes"][0]["data"] = {"triggerType": "webhook", "method": "POST", "path": "/fields", "mode": "async"}
    plan = compile_plan(spec, registry)
    assert (plan.concurrency, plan.on_interrupt, plan.trigger_mode) == (3, "fail", "async")
    default = compile_plan(_spec("defaults"), registry)
    assert (default.concurrency, default.on_interrupt, default.trigger_mode) == (None, "resume", "sync")
    assert validate_body("Workflow", spec, registry) == []

    bad = _spec("bad", concurrency=0, onInterrupt="retry")
    bad["nodes"][0]["data"]["mode"] = "later"
    messages = " | ".join(
        f"{'/'.join(map(str, p.path))}: {p.message}" for p in validate_body("Workflow", bad, registry)
    )
    assert "concurrency" in messages and "onInterrupt" in messages and "nodes/0/data/mode" in messages


def test_a_requeued_run_is_claimed_keeping_its_start(service, database):
    """A row put back to queued with resumes > 0 (the resume machinery audits
    EXECUTION_RESUMED when it requeues) keeps its first start when claimed, and its
    EXECUTION_STARTED says how many times it was resumed."""
    import datetime as dt

    from flowker.storage.models import utcnow

    workflow = _store(_spec("requeued"))
    execution_id = service.enqueue(workflow.id, {"n": 1}, actor=None).execution.id
    first_start = utcnow() - dt.timedelta(seconds=30)
    Execution.update(owner="dead-host:1:ab", resumes=1, started_at=first_start).where(
        Execution.id == execution_id
    ).execute()
    (claimed,) = claim(service, 1).executions
    assert claimed.started_at == first_start and claimed.owner == service.owner
    row = Execution.get_by_id(execution_id)
    assert (row.status, row.started_at, row.owner) == ("running", first_start, service.owner)
    entry = (
        AuditEntry.select().where(AuditEntry.resource_id == execution_id).order_by(AuditEntry.sequence.desc()).first()
    )
    assert entry.event_type == "EXECUTION_STARTED"
    assert '"resumes":1' in entry.canonical and f'"owner":"{service.owner}"' in entry.canonical
    assert service.run_claimed(claimed).status == "completed"
    assert verify_database(database).is_valid
