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
    from flowker.catalog.spec_sync import LocalTarget, load_documents, plan_changes
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
    from flowker.catalog.spec_sync import run_changes
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
    from flowker.catalog.spec_sync import run_changes
    from flowker.validation.loader import load_spec_text
    from flowker.storage.models import Executor

    target, _, changes = _target_and_plan(database_url, tmp_path)
    other = load_spec_text(EXECUTOR.replace("127.0.0.1:9", "127.0.0.1:10"), "other.yaml")
    target.executors.create(other, target.actor)

    assert not run_changes(changes, target)
    assert Executor.get().base_url == "http://127.0.0.1:10"


def test_run_installs_through_the_same_plan_enabling_executors_and_reactivating(database, database_url, tmp_path):
    """``flowker run`` on a kept database: a disabled executor is enabled, a changed active
    workflow goes deactivate -> draft -> update -> activate, and an unchanged one is left alone."""
    from flowker.catalog.spec_sync import install_for_run
    from flowker.storage.models import AuditEntry, Executor, WorkflowVersion

    target, documents, _ = _target_and_plan(database_url, tmp_path)
    by_kind = {document.kind: document for document in documents}
    executor = target.executors.create(by_kind["Executor"], target.actor)
    target.executors.disable(executor.id, target.actor)
    workflow = install_for_run(
        target_settings(database_url),
        target.executors.registry,
        [by_kind["Workflow"], by_kind["Executor"]],
        target.actor,
    )
    assert workflow.status == "active" and workflow.version == 1
    assert Executor.get().status == "active"

    from flowker.validation.loader import load_spec_text

    changed = load_spec_text(WORKFLOW.replace("name: sync-score", "name: sync-score\ndescription: changed"), "w.yaml")
    workflow = install_for_run(
        target_settings(database_url), target.executors.registry, [changed, by_kind["Executor"]], target.actor
    )
    assert (workflow.status, workflow.version, workflow.description) == ("active", 2, "changed")
    events = [e.event_type for e in AuditEntry.select().order_by(AuditEntry.sequence)][-4:]
    assert events == ["WORKFLOW_DEACTIVATED", "WORKFLOW_DRAFTED", "WORKFLOW_UPDATED", "WORKFLOW_ACTIVATED"]

    before = AuditEntry.select().count()
    again = install_for_run(
        target_settings(database_url), target.executors.registry, [changed, by_kind["Executor"]], target.actor
    )
    assert again.version == 2 and AuditEntry.select().count() == before
    assert WorkflowVersion.select().count() == 2


def test_run_install_raises_the_failing_steps_error(database, database_url, tmp_path):
    import pytest

    from flowker.catalog.spec_sync import install_for_run
    from flowker.errors import SSRFBlockedError
    from flowker.validation.loader import load_spec_text
    from flowker.storage.models import Workflow

    target, documents, _ = _target_and_plan(database_url, tmp_path)
    workflow = next(d for d in documents if d.kind == "Workflow")
    blocked = load_spec_text(EXECUTOR.replace("127.0.0.1:9", "169.254.169.254"), "scorer.yaml")
    with pytest.raises(SSRFBlockedError):
        install_for_run(target_settings(database_url), target.executors.registry, [workflow, blocked], target.actor)
    assert Workflow.select().count() == 0


def target_settings(database_url):
    return Settings.from_mapping({"database_url": database_url})
