"""A principal limited to named workflows sees and triggers only those (DESIGN §13).

Anything about another workflow answers as if it did not exist (404, never 403), so a
scoped caller cannot learn which ids exist. Lists, dashboards and audit queries leave
the other workflows out. Creating or renaming a workflow to a name outside the scope is
refused with 403 (the name is the caller's own, so nothing is revealed), and audited.
"""

from __future__ import annotations

from flowker.access import Principal
from flowker.errors import Forbidden, NotFound
from flowker.error_codes import ErrorCode
from flowker.storage.models import Execution, Workflow


def principal_of(req) -> Principal | None:
    return getattr(req.context, "principal", None)


def visible_workflow_ids(req) -> list[str] | None:
    """Ids of the workflows the request's principal may see; None: every workflow.
    Read once per request (a name may be given to a new workflow at any time)."""
    principal = principal_of(req)
    if principal is None or principal.workflows is None:
        return None
    cached = getattr(req.context, "visible_workflow_ids", None)
    if cached is None:
        names = sorted(principal.workflows)
        cached = [row.id for row in Workflow.select(Workflow.id).where(Workflow.name.in_(names))] if names else []
        req.context.visible_workflow_ids = cached
    return cached


def require_visible_workflow(req, workflow_id: str) -> None:
    """404 FLK-0100 for a workflow outside the scope (the same answer as a missing one)."""
    visible = visible_workflow_ids(req)
    if visible is not None and workflow_id not in visible:
        raise NotFound(f"workflow {workflow_id} not found", code=ErrorCode.WORKFLOW_NOT_FOUND)


def require_visible_execution(req, execution: Execution) -> None:
    visible = visible_workflow_ids(req)
    if visible is not None and execution.workflow_id not in visible:
        raise NotFound(f"execution {execution.id} not found", code=ErrorCode.EXECUTION_NOT_FOUND)


def spec_name(spec) -> object:
    body = getattr(spec, "body", spec)
    return body.get("name") if isinstance(body, dict) else None


def require_name_in_scope(req, name: object, state) -> None:
    """403 (audited) when a scoped principal would create or rename a workflow outside its scope."""
    principal = principal_of(req)
    if principal is None or principal.workflows is None:
        return
    if isinstance(name, str) and principal.sees_workflow(name):
        return
    operation_id = getattr(req.context, "operation_id", "workflow write")
    reason = "the workflow name is outside the workflows this principal is limited to"
    recorder = getattr(state, "record_forbidden", None)
    if recorder is not None:
        recorder(req, principal, operation_id, reason)
    raise Forbidden(f"{principal.name} may not call {operation_id}: {reason}")


def scoped_executions(req, query):
    """``query`` (of Execution) limited to the visible workflows."""
    visible = visible_workflow_ids(req)
    return query if visible is None else query.where(Execution.workflow_id.in_(visible))


def scoped_workflows(req, query):
    visible = visible_workflow_ids(req)
    return query if visible is None else query.where(Workflow.id.in_(visible))
