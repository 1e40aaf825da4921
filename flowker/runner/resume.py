"""The steps a resumed or retried run takes from the record instead of running them.

A resumed run (its process died; DESIGN 16) continues from its own recorded steps. A
retry is a new execution whose first steps are copies of the failed run's completed ones
(:func:`copy_reusable_steps`, in the transaction that creates it), so both start the same
way: :func:`recorded_steps` reads the execution's rows into the engine's seed
(:class:`flowker.runner.engine.RecordedStep`).

What a row holds is enough to settle its node again: the status, the output (as stored:
a value the redactor scrubbed is scrubbed for later expressions too), a conditional's
``{"result": bool}`` and, in an action's input, ``setsFinalOutput`` (with ``finalOutput``
when the final output is not the step's output). Rows that do not fit the workflow
version (another node at that step number, a conditional without a boolean result) are
refused with :class:`ResumeRefused`: the run fails rather than guess.
"""

from __future__ import annotations

from typing import Any, cast

from flowker.errors import FlowkerError
from flowker.runner.engine import COMPLETED, FAILED, SKIPPED, RecordedStep
from flowker.runner.graph import WorkflowPlan
from flowker.storage.models import StepResult

__all__ = ["ResumeRefused", "copy_reusable_steps", "recorded_steps", "reusable_step_rows"]

# The columns a seed needs (the others are for people reading the results).
_SEED_COLUMNS = (
    StepResult.step_number,
    StepResult.node_id,
    StepResult.node_type,
    StepResult.status,
    StepResult.input_data,
    StepResult.output,
    StepResult.error_message,
    StepResult.duration_ms,
)


class ResumeRefused(FlowkerError):
    """The recorded steps do not fit the workflow version the execution runs."""


def recorded_steps(execution_id: str, plan: WorkflowPlan) -> dict[str, RecordedStep]:
    """The execution's recorded steps as the engine's seed, by node id."""
    rows = (
        StepResult.select(*_SEED_COLUMNS)
        .where(StepResult.execution == execution_id)
        .order_by(StepResult.step_number)
        .tuples()
    )
    seed: dict[str, RecordedStep] = {}
    for row in rows:  # (step_number, node_id, node_type, status, input_data, output, error, duration_ms)
        step = _recorded(plan, *cast(tuple, row))
        seed[step.node_id] = step
    return seed


def _recorded(
    plan: WorkflowPlan, step_number, node_id, node_type, status, input_data, output, error, duration_ms
) -> RecordedStep:
    node = plan.by_id.get(node_id)
    if node is None or node.step_number != step_number or node.type != node_type:
        raise ResumeRefused(
            f"recorded step {step_number} (node {node_id!r}) does not fit version {plan.version} of the workflow"
        )
    if status not in (COMPLETED, FAILED, SKIPPED):
        raise ResumeRefused(f"recorded step {step_number} (node {node_id!r}) has an unknown status {status!r}")
    if status == COMPLETED and node_type == "conditional":
        if not (isinstance(output, dict) and isinstance(output.get("result"), bool)):
            raise ResumeRefused(f"recorded step {step_number} (conditional {node_id!r}) holds no boolean result")
    sets_final, final_output = _final_output(node_type, input_data, output)
    return RecordedStep(
        node_id=node_id,
        step_number=step_number,
        status=status,
        output=output,
        error=error,
        duration_ms=float(duration_ms or 0),
        sets_final_output=sets_final and status == COMPLETED,
        final_output=final_output,
    )


def _final_output(node_type: str, input_data: Any, output: Any) -> tuple[bool, Any]:
    if node_type != "action" or not isinstance(input_data, dict):
        return False, None
    # Rows written before the flag existed: the built-in set_output's output is the final output.
    if not input_data.get("setsFinalOutput") and input_data.get("actionType") != "set_output":
        return False, None
    return True, input_data["finalOutput"] if "finalOutput" in input_data else output


def reusable_step_rows(execution_id: str) -> list[StepResult]:
    """The failed run's steps a retry reuses: the leading run of completed and skipped
    steps, up to the first failed step or the first step never recorded (an interrupted
    run's). Everything from there runs again."""
    rows = list(StepResult.select().where(StepResult.execution == execution_id).order_by(StepResult.step_number))
    reusable: list[StepResult] = []
    for expected, row in enumerate(rows, start=1):
        if row.step_number != expected or row.status not in (COMPLETED, SKIPPED):
            break
        reusable.append(row)
    return reusable


def copy_reusable_steps(rows: list[StepResult], new_execution_id: str) -> int:
    """Copy ``rows`` (from :func:`reusable_step_rows`) to the retry, inside the caller's
    transaction; answers the last step number copied (0 for none)."""
    if not rows:
        return 0
    fields = [
        field
        for name, field in StepResult._meta.fields.items()
        if name not in ("id", "execution")  # a new row of the new execution
    ]
    StepResult.insert_many(
        [{**{field.name: getattr(row, field.name) for field in fields}, "execution": new_execution_id} for row in rows]
    ).execute()
    return rows[-1].step_number
