"""The composition root: two Runtimes on two databases in one process.

Each runtime's executions, store changes and audit appends go to its own database, with
its own audit log (checkpoints signed only where that runtime's settings ask for them),
whether the two are used in turn from one thread or at once from two.
"""

from __future__ import annotations

import threading

import pytest

from flowker.audit.chain import Actor
from flowker.local_server import LocalHTTPServer
from flowker.settings import Settings
from flowker.validation.loader import load_spec_text

ACTOR = Actor(type="user", id="two-runtimes", ip="127.0.0.1")
ROUNDS = 6
# Entries per round: EXECUTION_STARTED, STEP_COMPLETED x2, PROVIDER_CALL_STARTED and _COMPLETED,
# EXECUTION_COMPLETED, WORKFLOW_DEACTIVATED, _DRAFTED and _ACTIVATED, one direct append.
PER_ROUND = 10

EXECUTOR_FILE = """kind: Executor
name: echo
baseUrl: {url}
endpoints:
  - {{name: op, path: /op, method: POST}}
authentication:
  type: none
"""

WORKFLOW_FILE = """kind: Workflow
name: {name}
nodes:
  - id: start
    type: trigger
    data: {{triggerType: manual}}
  - id: call
    type: executor
    data: {{executor: echo, endpoint: op}}
edges:
  - {{source: start, target: call}}
"""


@pytest.fixture(params=["sqlite+sqlite", pytest.param("sqlite+postgresql", marks=pytest.mark.postgres)])
def second_url(request, tmp_path):
    if request.param == "sqlite+sqlite":
        return f"sqlite:///{tmp_path}/second.db"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def runtimes(tmp_path, second_url):
    """(first, second): the first signs checkpoints every 3 entries, the second does not.
    Neither is the process's default binding: every use must go to its own database."""
    from flowker.audit.checkpoints import generate_signing_key, private_key_pem
    from flowker.plugins import load_registry
    from flowker.runtime import Runtime
    from flowker.storage.database import database_proxy
    from flowker.storage.migrations import upgrade

    key_path = tmp_path / "audit-signing.pem"
    key_path.write_text(private_key_pem(generate_signing_key()))
    first_settings = Settings.from_mapping(
        {
            "database_url": f"sqlite:///{tmp_path}/first.db",
            "retry_max_attempts": "1",
            "audit_signing_key": str(key_path),
            "audit_checkpoint_interval": "3",
        }
    )
    second_settings = Settings.from_mapping({"database_url": second_url, "retry_max_attempts": "1"})
    registry = load_registry(first_settings)
    built = []
    database_proxy.initialize(None)  # no fallback: an unbound model access fails loudly
    try:
        for settings in (first_settings, second_settings):
            runtime = Runtime.from_settings(settings, registry=registry, bind_process=False)
            built.append(runtime)
            upgrade(runtime.database)
        yield tuple(built)
    finally:
        for runtime in built:
            runtime.close()


def _install(runtime, url: str, name: str):
    """The executor and an active workflow, through the runtime's stores."""
    with runtime.bound(), runtime.database.connection_context():
        runtime.executors.create(load_spec_text(EXECUTOR_FILE.format(url=url), "echo.yaml", from_file=True), ACTOR)
        workflow = runtime.workflows.create(
            load_spec_text(WORKFLOW_FILE.format(name=name), "wf.yaml", from_file=True), ACTOR
        )
        return runtime.workflows.activate(workflow.id, ACTOR)


def _run_once(runtime, workflow_id: str, mine: set, round_number: int) -> None:
    result = runtime.execution_service.execute(workflow_id, {"round": round_number}, actor=ACTOR)
    assert result.execution.status == "completed", result.execution.error_message
    mine.add(result.execution.id)
    # A store change and a direct append between runs: appends of every kind interleave.
    with runtime.bound(), runtime.database.connection_context():
        runtime.workflows.deactivate(workflow_id, ACTOR)
        runtime.workflows.to_draft(workflow_id, ACTOR)
        runtime.workflows.activate(workflow_id, ACTOR)
        runtime.audit_log.append(
            "WORKFLOW_UPDATED",
            "UPDATE",
            "SUCCESS",
            "workflow",
            workflow_id,
            actor=ACTOR,
            metadata={"round": round_number},
        )


def _chain_of(runtime):
    from flowker.storage.models import AuditCheckpoint, AuditEntry, Execution, Workflow

    with runtime.bound(), runtime.database.connection_context():
        verified = runtime.audit_log.verify()
        entries = list(AuditEntry.select(AuditEntry.resource_type, AuditEntry.resource_id))
        return (
            verified,
            entries,
            {e.id for e in Execution.select(Execution.id)},
            {w.id for w in Workflow.select(Workflow.id)},
            AuditCheckpoint.select().count(),
        )


def test_two_runtimes_in_one_process_keep_to_their_own_databases(runtimes):
    first, second = runtimes
    with LocalHTTPServer() as server:
        workflows = {id(r): _install(r, server.url, f"wf-{i}") for i, r in enumerate(runtimes)}
        executions: dict[int, set] = {id(first): set(), id(second): set()}
        # In turn from one thread...
        for round_number in range(ROUNDS):
            for runtime in runtimes:
                _run_once(runtime, workflows[id(runtime)].id, executions[id(runtime)], round_number)
        # ... and at once from two.
        errors: list[BaseException] = []

        def work(runtime):
            try:
                for round_number in range(ROUNDS, 2 * ROUNDS):
                    _run_once(runtime, workflows[id(runtime)].id, executions[id(runtime)], round_number)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(runtime,)) for runtime in runtimes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads)

    for runtime, other in ((first, second), (second, first)):
        verified, entries, execution_ids, workflow_ids, checkpoints = _chain_of(runtime)
        assert verified.is_valid, verified.message
        assert verified.total_checked == len(entries)
        assert execution_ids == executions[id(runtime)] and len(execution_ids) == 2 * ROUNDS
        assert workflow_ids == {workflows[id(runtime)].id}
        audited = {
            resource_id
            for kind, resource_id in ((e.resource_type, e.resource_id) for e in entries)
            if kind in ("execution", "workflow")
        }
        # Every entry is about this runtime's own workflow and executions, none about the other's.
        assert audited == execution_ids | workflow_ids
        assert not audited & (executions[id(other)] | {workflows[id(other)].id})
        assert len(entries) == 3 + 2 * ROUNDS * PER_ROUND
    first_checkpoints, second_checkpoints = _chain_of(first)[4], _chain_of(second)[4]
    assert first_checkpoints == len(_chain_of(first)[1]) // 3  # the first runtime's key signs, every 3
    assert second_checkpoints == 0  # the second has no key: its appends never checkpoint
