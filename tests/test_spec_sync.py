"""Local spec sync (``flowker apply``, ``serve --specs``) when another writer outside the sync
lock (the REST API) creates the same resources between the plan and its steps."""

from __future__ import annotations

from flowker.settings import Settings

EXECUTOR = """\
kind: Executor
name: scorer
baseUrl: http://127.0.0.1:9
endpoints:
  - {name: score, path: /score, method: POST}
authentication: {type: none}
"""

WORKFLOW = """\
kind: Workflow
name: sync-score
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
  - {id: score, type: executor, data: {executor: scorer, endpoint: score}}
edges:
  - {source: start, target: score}
"""


def _target_and_plan(database_url, tmp_path):
    from flowker.cli.apply import LocalTarget, load_documents, plan_changes
    from flowker.plugins import load_registry

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "scorer.yaml").write_text(EXECUTOR)
    (folder / "workflow.yaml").write_text(WORKFLOW)
    settings = Settings.from_mapping({"database_url": database_url})
    target = LocalTarget(settings, load_registry(settings))
    documents, problems = load_documents(folder)
    assert not problems
    return target, documents, plan_changes(documents, target, activate=True)


def test_a_step_another_writer_already_did_identically_is_success(database, database_url, tmp_path):
    from flowker.cli.apply import run_changes
    from flowker.storage.models import AuditEntry, Executor, Workflow

    target, documents, changes = _target_and_plan(database_url, tmp_path)
    assert [change.steps for change in changes] == [["create"], ["create", "activate"]]
    # The other writer: the same documents, created (and activated) between plan and apply.
    by_kind = {document.kind: document for document in documents}
    target.executors.create(by_kind["Executor"], target.actor)
    workflow = target.workflows.create(by_kind["Workflow"], target.actor)
    target.workflows.activate(workflow.id, target.actor)
    before = AuditEntry.select().count()

    assert run_changes(changes, target)
    assert AuditEntry.select().count() == before  # nothing done twice
    assert Executor.select().count() == 1 and Workflow.get().status == "active"


def test_a_different_resource_of_the_same_name_still_fails(database, database_url, tmp_path):
    from flowker.cli.apply import run_changes
    from flowker.spec.loader import load_spec_text
    from flowker.storage.models import Executor

    target, _, changes = _target_and_plan(database_url, tmp_path)
    other = load_spec_text(EXECUTOR.replace("127.0.0.1:9", "127.0.0.1:10"), "other.yaml")
    target.executors.create(other, target.actor)

    assert not run_changes(changes, target)
    assert Executor.get().base_url == "http://127.0.0.1:10"
