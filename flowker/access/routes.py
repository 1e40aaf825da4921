"""The one table of which operation needs which permission (and so which roles).

Keyed by the OpenAPI ``operationId`` (flowker.api.openapi_operations). The API's
authorization middleware enforces it, the OpenAPI document states it on each operation
as ``x-flowker-roles``, and ``docs/roles.md`` is generated from it
(``python -m flowker.api.roles_doc > docs/roles.md``). A test fails when an operation is
missing here or an entry names no operation.
"""

from __future__ import annotations

from flowker.access.principal import ROLE_ORDER, Permission, roles_with

R, RUN, EDIT, AUDIT, ADMIN, HOOK, METRICS, PUBLIC = (
    Permission.READ,
    Permission.RUN,
    Permission.EDIT,
    Permission.AUDIT,
    Permission.ADMIN,
    Permission.WEBHOOK,
    Permission.METRICS,
    Permission.PUBLIC,
)

OPERATION_PERMISSIONS: dict[str, Permission] = {
    # health and the API description
    "health": PUBLIC,
    "live": PUBLIC,
    "ready": PUBLIC,
    "version": R,
    "openapi": R,
    "getPrincipal": R,
    "metrics": METRICS,
    # workflows
    "listWorkflows": R,
    "getWorkflow": R,
    "createWorkflow": EDIT,
    "replaceWorkflow": EDIT,
    "deleteWorkflow": EDIT,
    "cloneWorkflow": EDIT,
    "activateWorkflow": EDIT,
    "deactivateWorkflow": EDIT,
    "draftWorkflow": EDIT,
    "listWorkflowVersions": R,
    "getWorkflowVersion": R,
    # executors
    "listExecutors": R,
    "getExecutor": R,
    "createExecutor": EDIT,
    "replaceExecutor": EDIT,
    "patchExecutor": EDIT,
    "deleteExecutor": EDIT,
    "enableExecutor": EDIT,
    "disableExecutor": EDIT,
    "testExecutor": EDIT,
    # executions
    "executeWorkflow": RUN,
    "listExecutions": R,
    "getExecution": R,
    "getExecutionResults": R,
    "listExecutionSteps": R,
    "retryExecution": RUN,
    # webhooks
    "webhookGet": HOOK,
    "webhookPost": HOOK,
    "webhookPut": HOOK,
    "webhookPatch": HOOK,
    "webhookDelete": HOOK,
    # audit
    "listAuditEvents": AUDIT,
    "getAuditEvent": AUDIT,
    "verifyAuditChain": AUDIT,
    # catalog and dashboards
    "listAuthTypes": R,
    "getAuthType": R,
    "listActionTypes": R,
    "workflowDashboard": R,
    "executionDashboard": R,
    # API keys
    "createApiKey": ADMIN,
    "listApiKeys": ADMIN,
    "changeApiKey": ADMIN,
    "revokeApiKey": ADMIN,
}

# Operations a principal limited to named workflows may not call at all (403): they change
# or reveal things every workflow shares.
UNSCOPED_ONLY: frozenset[str] = frozenset(
    {
        "createExecutor",
        "replaceExecutor",
        "patchExecutor",
        "deleteExecutor",
        "enableExecutor",
        "disableExecutor",
        "testExecutor",
        "verifyAuditChain",
        "metrics",  # its labels name every workflow
        "createApiKey",
        "listApiKeys",
        "changeApiKey",
        "revokeApiKey",
    }
)


def roles_for(operation_id: str) -> list[str]:
    """The roles allowed to call the operation (``x-flowker-roles``); [] for public ones."""
    permission = OPERATION_PERMISSIONS[operation_id]
    if permission is Permission.PUBLIC:
        return []
    return [role.value for role in roles_with(permission)]


def markdown_table(operations) -> str:
    """The roles table of docs/roles.md: one row per operation (``operations``: (method,
    path, operation id) tuples)."""
    header = "| operation | method | path | " + " | ".join(ROLE_ORDER) + " |"
    lines = [header, "|" + "---|" * (3 + len(ROLE_ORDER))]
    for method, path, operation_id in operations:
        permission = OPERATION_PERMISSIONS[operation_id]
        allowed = set(roles_for(operation_id))
        cells = [
            "any (no credential)" if permission is Permission.PUBLIC else ("yes" if role in allowed else "-")
            for role in ROLE_ORDER
        ]
        scoped = " (unscoped only)" if operation_id in UNSCOPED_ONLY else ""
        lines.append(f"| `{operation_id}`{scoped} | {method} | `{path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
