"""``flowker apply`` as a real command: into the local database (SQLite and PostgreSQL) and
into a real ``flowker serve`` over REST. The plan, unchanged specs (no version, no audit
entry), the audited ``--activate`` path, ``--dry-run`` and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_helpers import API_KEY, api_session, flowker_env, run_flowker, workflow_yaml, write_specs

ACTIVATE_PATH = ["WORKFLOW_DEACTIVATED", "WORKFLOW_DRAFTED", "WORKFLOW_UPDATED", "WORKFLOW_ACTIVATED"]


def read_database(database_url: str):
    """(audit entries as (event type, resource id), {workflow name: (status, version)})."""
    from flowker.storage.database import close_database, open_database
    from flowker.storage.models import ALL_MODELS, AuditEntry, Workflow

    database = open_database(database_url)
    try:
        with database.bind_ctx(ALL_MODELS), database.connection_context():
            if not database.table_exists(AuditEntry._meta.table_name):
                return [], {}
            entries = [(e.event_type, e.resource_id) for e in AuditEntry.select().order_by(AuditEntry.sequence)]
            workflows = {w.name: (w.status, w.version) for w in Workflow.select()}
            return entries, workflows
    finally:
        close_database(database)


def apply(folder, env, *options: str):
    return run_flowker(["apply", str(folder), *options], env)


def plan_line(output: str, kind: str, name: str) -> str:
    for line in output.splitlines():
        if line.split()[:2] == [kind, name]:
            return " ".join(line.split())
    raise AssertionError(f"no plan line for {kind} {name} in:\n{output}")


def test_apply_locally_plans_creates_skips_unchanged_and_activates_through_draft(database_url, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    env = flowker_env(database_url)

    dry = apply(folder, env, "--dry-run", "--activate")
    assert dry.returncode == 0, dry.stderr
    assert plan_line(dry.stdout, "executor", "scorer") == "executor scorer create"
    assert plan_line(dry.stdout, "workflow", "e2e-score") == "workflow e2e-score create create -> activate"
    assert dry.stdout.index("executor  scorer") < dry.stdout.index("workflow  e2e-score")
    assert "Dry run: nothing changed." in dry.stdout
    if database_url.startswith("sqlite:///"):
        assert not Path(database_url[len("sqlite:///") :]).exists(), "a dry run created the database"
    assert read_database(database_url) == ([], {})

    created = apply(folder, env)
    assert created.returncode == 0, created.stderr
    assert "Plan: 2 to create, 0 to update, 0 unchanged." in created.stdout
    entries, workflows = read_database(database_url)
    assert [event for event, _ in entries] == ["EXECUTOR_CREATED", "WORKFLOW_CREATED"]
    assert workflows == {"e2e-score": ("draft", 1)}

    again = apply(folder, env)
    assert again.returncode == 0, again.stderr
    assert plan_line(again.stdout, "executor", "scorer") == "executor scorer unchanged"
    assert plan_line(again.stdout, "workflow", "e2e-score") == "workflow e2e-score unchanged"
    assert "Nothing to do." in again.stdout
    assert read_database(database_url) == (entries, workflows)

    activated = apply(folder, env, "--activate")
    assert activated.returncode == 0, activated.stderr
    assert plan_line(activated.stdout, "workflow", "e2e-score") == "workflow e2e-score unchanged draft: activate"
    entries, workflows = read_database(database_url)
    assert entries[-1][0] == "WORKFLOW_ACTIVATED" and workflows == {"e2e-score": ("active", 1)}

    # A changed active workflow is refused without --activate, and nothing changes.
    (folder / "workflows" / "e2e-score.yaml").write_text(workflow_yaml(label="rescored"))
    refused = apply(folder, env)
    assert refused.returncode == 1
    assert "REFUSED" in plan_line(refused.stdout, "workflow", "e2e-score")
    assert "nothing applied" in refused.stderr
    assert read_database(database_url) == (entries, workflows)

    # With --activate it goes through deactivate, draft, update, activate: each audited.
    moved = apply(folder, env, "--activate")
    assert moved.returncode == 0, moved.stderr
    assert plan_line(moved.stdout, "workflow", "e2e-score") == (
        "workflow e2e-score update active: deactivate -> draft -> update -> activate"
    )
    after, workflows = read_database(database_url)
    new = after[len(entries) :]
    assert [event for event, _ in new] == ACTIVATE_PATH
    assert len({resource for _, resource in new}) == 1
    assert workflows == {"e2e-score": ("active", 2)}

    settled = apply(folder, env, "--activate")
    assert settled.returncode == 0 and "Nothing to do." in settled.stdout
    assert read_database(database_url)[0] == after

    verified = run_flowker(["audit", "verify", "--db", database_url], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_apply_with_an_invalid_spec_applies_nothing(tmp_path, scorer):
    database_url = f"sqlite:///{tmp_path}/flowker.db"
    folder = write_specs(tmp_path / "specs", scorer.url, executor="no-such-executor")
    result = apply(folder, flowker_env(database_url), "--activate")
    assert result.returncode == 1
    workflow_file = folder / "workflows" / "e2e-score.yaml"
    assert f"{workflow_file}:" in result.stderr and "no-such-executor" in result.stderr
    assert "nothing applied" in result.stderr
    assert read_database(database_url) == ([], {})


def test_apply_usage_errors_exit_2(tmp_path):
    env = flowker_env(f"sqlite:///{tmp_path}/flowker.db")
    assert apply(tmp_path, env, "--server", "http://127.0.0.1:9").returncode == 2
    assert (
        apply(tmp_path, env, "--server", "http://127.0.0.1:9", "--api-key", "k", "--db", "sqlite:///x.db").returncode
        == 2
    )
    assert apply(tmp_path / "missing", env).returncode == 2


@pytest.fixture
def remote(start_server):
    return start_server()


def audit_count(url: str) -> int:
    api, count, cursor = api_session(), 0, None
    for _ in range(1000):
        page = api.get(f"{url}/v1/audit-events", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        count += len(page["items"])
        cursor = page.get("nextCursor")
        if not page["hasMore"]:
            return count
    raise AssertionError("audit pages never ended")


def test_apply_to_a_server_over_rest(remote, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    env = flowker_env("sqlite:///unused.db")
    server = ["--server", remote.url, "--api-key", API_KEY]
    api = api_session()

    created = apply(folder, env, *server)
    assert created.returncode == 0, created.stderr
    assert plan_line(created.stdout, "workflow", "e2e-score") == "workflow e2e-score create"
    assert API_KEY not in created.stdout + created.stderr
    workflows = api.get(f"{remote.url}/v1/workflows").json()["items"]
    assert [(w["name"], w["status"]) for w in workflows] == [("e2e-score", "draft")]
    workflow_id = workflows[0]["id"]
    count = audit_count(remote.url)

    # The key may come from FLOWKER_API_KEY instead of the command line.
    again = apply(folder, {**env, "FLOWKER_API_KEY": API_KEY}, "--server", remote.url)
    assert again.returncode == 0, again.stderr
    assert "Plan: 0 to create, 0 to update, 2 unchanged." in again.stdout
    assert audit_count(remote.url) == count

    activated = apply(folder, env, *server, "--activate")
    assert activated.returncode == 0, activated.stderr
    run = api.post(f"{remote.url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 21}})
    assert run.status_code == 201 and run.json()["status"] == "completed", run.text

    (folder / "workflows" / "e2e-score.yaml").write_text(workflow_yaml(label="rescored"))
    count = audit_count(remote.url)
    dry = apply(folder, env, *server, "--activate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "deactivate -> draft -> update -> activate" in plan_line(dry.stdout, "workflow", "e2e-score")
    assert audit_count(remote.url) == count

    moved = apply(folder, env, *server, "--activate")
    assert moved.returncode == 0, moved.stderr
    events = api.get(
        f"{remote.url}/v1/audit-events", params={"resourceId": workflow_id, "limit": 4, "sortOrder": "DESC"}
    ).json()["items"]
    assert [event["eventType"] for event in reversed(events)] == ACTIVATE_PATH
    current = api.get(f"{remote.url}/v1/workflows/{workflow_id}").json()
    assert (current["status"], current["version"]) == ("active", 2)
    run = api.post(f"{remote.url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 5}})
    result = api.get(f"{remote.url}/v1/executions/{run.json()['executionId']}/results").json()
    assert result["finalOutput"]["label"] == "rescored"


def test_apply_to_a_server_with_a_wrong_key_fails_without_printing_it(remote, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    wrong = "wrong-key-abcdef-123456"
    result = apply(folder, flowker_env("sqlite:///unused.db"), "--server", remote.url, "--api-key", wrong)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert wrong not in result.stdout + result.stderr
