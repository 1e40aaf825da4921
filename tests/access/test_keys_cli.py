"""``flowker keys create|list|revoke`` in a real subprocess, on SQLite and PostgreSQL: the
key printed once, found by a server on the same database, refused once revoked; every
command finds the database as the other commands do."""

from __future__ import annotations

import json

import falcon.testing
import pytest

from cli_runner import run_flowker

ADMIN_KEY = "cli-test-admin-key-0123456789abcdef0123"


@pytest.fixture
def served(database, database_url, tmp_path):
    """An app on the database the commands use (the suite's registry is not needed)."""
    from flowker.api.app import create_app
    from flowker.runtime import Runtime
    from flowker.settings import Settings

    settings = Settings.from_mapping({"database_url": database_url, "api_keys": f"boss:{ADMIN_KEY}"})
    app = create_app(settings, runtime=Runtime.from_settings(settings, database=database))
    yield app
    app.state.close()


def flowker(database_url, *args):
    return run_flowker("keys", *args, FLOWKER_DATABASE_URL=database_url)


def test_create_list_revoke_against_a_server_on_the_same_database(served, database_url):
    made = flowker(database_url, "create", "--name", "ci-deploy", "--role", "operator", "--expires", "90d")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()  # the key alone on stdout: KEY=$(flowker keys create ...)
    assert key.startswith("flk_") and len(key) == 60 and "shown this once" in made.stderr
    assert "ci-deploy" in made.stderr and "operator" in made.stderr and key not in made.stderr

    as_json = flowker(
        database_url, "create", "--name", "compliance", "--role", "auditor", "--workflows", "a,b", "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert set(body) == {"name", "role", "key", "expiresAt"}
    assert body["name"] == "compliance" and body["role"] == "auditor" and body["expiresAt"] is None

    client = falcon.testing.TestClient(served, headers={"X-API-Key": key})
    assert client.simulate_get("/v1/workflows").status_code == 200
    assert client.simulate_post("/v1/workflows", json={}).status_code == 403

    listed = flowker(database_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and body["key"] not in listed.stdout
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "SCOPE", "STATUS", "CREATED", "EXPIRES", "LAST", "USED"]
    ci_line = next(line for line in lines if line.startswith("ci-deploy"))
    assert "operator" in ci_line and "active" in ci_line and not ci_line.endswith("never")  # used once
    assert "a,b" in next(line for line in lines if line.startswith("compliance"))
    entries = json.loads(flowker(database_url, "list", "--json").stdout)
    assert [entry["name"] for entry in entries] == ["ci-deploy", "compliance"]
    assert entries[0]["lastUsedAt"] is not None and entries[1]["workflows"] == ["a", "b"]

    revoked = flowker(database_url, "revoke", "ci-deploy")
    assert revoked.returncode == 0, revoked.stderr
    assert client.simulate_get("/v1/workflows").status_code == 401
    again = flowker(database_url, "revoke", "ci-deploy")
    assert again.returncode == 1 and "no API key named 'ci-deploy'" in again.stderr

    # Each command is in the audit chain, by the user who ran it.
    admin = falcon.testing.TestClient(served, headers={"X-API-Key": ADMIN_KEY})
    events = admin.simulate_get("/v1/audit-events", params={"resourceType": "api_key", "limit": 10}).json["items"]
    assert sorted(entry["eventType"] for entry in events) == ["API_KEY_CREATED", "API_KEY_CREATED", "API_KEY_REVOKED"]
    assert all(entry["actor"]["id"].startswith("cli:") for entry in events)
    assert not any(key in str(entry) for entry in events)


def test_bad_options_are_usage_errors_and_change_nothing(served, database_url):
    for args in (
        ["--name", "x", "--role", "root"],
        ["--name", "x", "--role", "viewer", "--expires", "soon"],
        ["--name", "x", "--role", "admin", "--workflows", "a"],
        ["--name", "bad name", "--role", "viewer"],
    ):
        result = flowker(database_url, "create", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "flk_" not in result.stdout
    assert json.loads(flowker(database_url, "list", "--json").stdout) == []


def test_the_database_is_found_like_every_other_command(tmp_path):
    missing = run_flowker("keys", "list", "--db", str(tmp_path / "nowhere.db"), cwd=tmp_path)
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "nowhere.db").exists()
    assert run_flowker("db", "upgrade", "--db", "here.db", cwd=tmp_path).returncode == 0
    made = run_flowker("keys", "create", "--name", "k", "--role", "viewer", "--db", "here.db", cwd=tmp_path)
    assert made.returncode == 0 and "database sqlite:///" in made.stderr and "here.db (from --db)" in made.stderr
    by_env = run_flowker("keys", "list", cwd=tmp_path, FLOWKER_DATABASE_URL="here.db")
    assert by_env.returncode == 0 and "(from FLOWKER_DATABASE_URL)" in by_env.stderr and "k " in by_env.stdout
