"""The stores as ``flowker apply`` uses them: documents loaded from files, the
"unchanged" plan check, and git-friendly secret rules."""

from __future__ import annotations

import pytest

from flowker.audit.chain import Actor
from flowker.errors import SpecError
from flowker.validation.loader import load_spec_text
from flowker.storage.models import AuditEntry, WorkflowVersion

ACTOR = Actor(type="user", id="flowker-apply", ip="127.0.0.1")

EXECUTOR_FILE = """kind: Executor
name: scorer
baseUrl: {url}
endpoints:
  - {{name: analyze, path: /analyze, method: POST}}
authentication:
  type: bearer
  config:
    token: {token}
"""

WORKFLOW_FILE = """kind: Workflow
name: from-git
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}
  - id: score
    type: executor
    data: {executor: scorer, endpoint: analyze}
edges:
  - {source: start, target: score}
"""


def test_documents_from_files_and_the_unchanged_check(app, stub):
    executors, workflows = app.state.executors, app.state.workflows
    executor_doc = load_spec_text(
        EXECUTOR_FILE.format(url=stub.url, token="{$env: SCORER_TOKEN}"), "executors/scorer.yaml", from_file=True
    )
    executor = executors.create(executor_doc, ACTOR)
    assert executors.is_unchanged(executor, executor_doc)
    assert executors.update(executor.id, executor_doc, ACTOR).changed is False

    workflow_doc = load_spec_text(WORKFLOW_FILE, "workflows/from-git.yaml", from_file=True)
    workflow = workflows.create(workflow_doc, ACTOR)
    entries = AuditEntry.select().count()
    assert workflows.is_unchanged(workflow, workflow_doc)
    assert workflows.update(workflow.id, workflow_doc, ACTOR).changed is False
    assert AuditEntry.select().count() == entries
    edited = load_spec_text(
        WORKFLOW_FILE.replace("from-git\n", "from-git\ndescription: edited\n"), "w.yaml", from_file=True
    )
    assert not workflows.is_unchanged(workflow, edited)
    result = workflows.update(workflow.id, edited, ACTOR)
    assert result.changed and result.workflow.version == 2
    assert WorkflowVersion.select().where(WorkflowVersion.workflow_id == workflow.id).count() == 2
    assert workflows.activate(workflow.id, ACTOR).status == "active"
    entry = AuditEntry.select().order_by(AuditEntry.sequence.desc()).get()
    assert (entry.event_type, entry.actor_id) == ("WORKFLOW_ACTIVATED", "flowker-apply")


def test_literal_secrets_are_refused_in_files_but_kept_encrypted_over_rest(app, stub):
    document = load_spec_text(EXECUTOR_FILE.format(url=stub.url, token="plain-secret-value"), "e.yaml", from_file=True)
    with pytest.raises(SpecError) as refused:
        app.state.executors.create(document, ACTOR)
    assert "must be a reference" in str(refused.value) and "plain-secret-value" not in str(refused.value)
    rest = load_spec_text(EXECUTOR_FILE.format(url=stub.url, token="plain-secret-value"), "<request>", from_file=False)
    executor = app.state.executors.create(rest, ACTOR)
    assert "plain-secret-value" not in str(executor.spec)
    assert app.state.executors.is_unchanged(executor, rest)
