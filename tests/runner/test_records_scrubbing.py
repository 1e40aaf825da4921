"""The recorder scrubs each flush's strings once (memoized within the flush only): a secret
registered between two flushes is masked in every row written after it."""

from __future__ import annotations

from types import SimpleNamespace

from flowker.runner.engine import COMPLETED, StepRecord
from flowker.runner.records import ExecutionRecorder
from flowker.security.redaction import Redactor
from flowker.storage.models import Execution, StepResult, utcnow

SECRET = "tok-9f8e7d6c5b4a39281706"


def _step(number: int, output) -> StepRecord:
    node = SimpleNamespace(id=f"n{number}", name=f"node {number}", type="action", step_number=number)
    now = utcnow()
    return StepRecord(node, COMPLETED, now, now, input={"actionType": "transform"}, output=output)


def test_a_secret_registered_between_flushes_is_masked_in_later_rows(database):
    execution = Execution.create(
        workflow_id="w-1",
        workflow_version=1,
        status="running",
        current_step=0,
        total_steps=3,
        owner="me",
        started_at=utcnow(),
    )
    redactor = Redactor()
    recorder = ExecutionRecorder(execution, owner="me", lease_seconds=60, redactor=redactor)
    # Within one flush the same string (as a value and as a key) is scrubbed once and reused.
    recorder._pending.extend([_step(1, {"value": SECRET, SECRET: [SECRET]}), _step(2, {"again": SECRET})])
    recorder.flush()
    redactor.add_secret(SECRET)
    recorder._pending.append(_step(3, {"value": SECRET, SECRET: [SECRET]}))
    recorder.flush()
    rows = {step.step_number: step.output for step in StepResult.select()}
    # Not known yet at the first flush: stored as it was (what scrubbing one by one would do).
    assert rows[1] == {"value": SECRET, SECRET: [SECRET]} and rows[2] == {"again": SECRET}
    # Known at the second: masked everywhere, keys included, despite the earlier flush's memo.
    assert SECRET not in repr(rows[3]) and "****" in rows[3]["value"]
    assert Execution.get_by_id(execution.id).current_step == 3
