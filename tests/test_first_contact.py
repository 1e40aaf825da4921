"""A newcomer's first commands, as real subprocesses: every command finds the database
the same way (a URL or a path, from --db or FLOWKER_DATABASE_URL) and names it; a dry
run writes nothing; a taken port is one line; help is whole and shows examples."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _env(**extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def flowker(*args, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowker", *map(str, args)],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def taken_port():
    """A port some other process (this one) is listening on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


# ------------------------------------------------------------------ one database, found one way


def test_db_accepts_a_file_path_and_every_command_finds_the_same_database(tmp_path):
    (tmp_path / "flowker-data").mkdir()
    upgrade = flowker("db", "upgrade", "--db", "flowker-data/flowker.db", cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    database_file = tmp_path / "flowker-data" / "flowker.db"
    assert database_file.exists()
    assert f"database sqlite:///{database_file} (from --db)" in upgrade.stderr
    # The same path through the setting, the way the quick start's other terminal has it.
    verify = flowker("audit", "verify", cwd=tmp_path, FLOWKER_DATABASE_URL="flowker-data/flowker.db")
    assert verify.returncode == 0, verify.stderr
    assert f"database sqlite:///{database_file} (from FLOWKER_DATABASE_URL)" in verify.stderr
    assert not (tmp_path / "flowker.db").exists()


def test_audit_verify_on_a_missing_database_names_it_and_creates_nothing(tmp_path):
    result = flowker("audit", "verify", cwd=tmp_path)
    assert result.returncode == 2
    assert f"no database at {tmp_path / 'flowker.db'}" in result.stderr
    assert "FLOWKER_DATABASE_URL" in result.stderr and "--db" in result.stderr
    assert "db upgrade" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == []
    named = flowker("audit", "verify", "--db", "flowker-data/flowker.db", cwd=tmp_path)
    assert named.returncode == 2
    assert f"no database at {tmp_path / 'flowker-data' / 'flowker.db'} (from --db)" in named.stderr


def test_secrets_rotate_on_a_missing_database_names_it_and_creates_nothing(tmp_path):
    result = flowker("secrets", "rotate", "--db", "elsewhere.db", cwd=tmp_path, FLOWKER_SECRET_KEY="k" * 43 + "=")
    assert result.returncode == 2
    assert f"no database at {tmp_path / 'elsewhere.db'} (from --db)" in result.stderr
    assert _files(tmp_path) == []


def test_a_database_without_flowker_tables_is_named(database_url, tmp_path):
    if database_url.startswith("sqlite:"):
        Path(database_url.removeprefix("sqlite:///")).touch()  # a file, but not Flowker's
    result = flowker("audit", "verify", cwd=tmp_path, FLOWKER_DATABASE_URL=database_url)
    assert result.returncode == 2
    assert "has no Flowker tables" in result.stderr
    if database_url.startswith("sqlite:"):
        assert database_url in result.stderr
    password = urlsplit(database_url).password
    assert not password or password not in result.stderr


def test_commands_name_a_database_that_is_not_the_default(database_url, tmp_path):
    assert flowker("db", "upgrade", cwd=tmp_path, FLOWKER_DATABASE_URL=database_url).returncode == 0
    result = flowker("audit", "verify", "--json", cwd=tmp_path, FLOWKER_DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    assert "(from FLOWKER_DATABASE_URL)" in result.stderr
    assert result.stdout.lstrip().startswith("{")  # the JSON stays alone on stdout


# ------------------------------------------------------------------ a dry run writes nothing


def test_apply_dry_run_without_a_database_writes_no_file(tmp_path):
    result = flowker("apply", EXAMPLES, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing changed." in result.stdout
    assert _files(tmp_path) == []


def test_apply_dry_run_on_a_migrated_database_writes_no_file(tmp_path):
    assert flowker("db", "upgrade", "--db", "flowker.db", cwd=tmp_path).returncode == 0
    before = _files(tmp_path)
    result = flowker("apply", EXAMPLES, "--dry-run", "--db", "flowker.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _files(tmp_path) == before
    assert not (tmp_path / "flowker.db.secret-key").exists()


# ------------------------------------------------------------------ a taken port: one line, exit 2


def test_serve_on_a_taken_port_prints_one_line_and_exits_2(taken_port, tmp_path):
    result = flowker("serve", "--bind", f"127.0.0.1:{taken_port}", "--db", "serve.db", cwd=tmp_path)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"port {taken_port} is in use" in lines[0] and "--bind" in lines[0]
    assert _files(tmp_path) == []  # refused before the database was touched


def test_sample_service_on_a_taken_port_prints_one_line_and_exits_2(taken_port):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sample_service.py"), "--port", str(taken_port)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{taken_port}: port in use" in lines[0] and "SAMPLE_SERVICE_PORT" in lines[0]


# ------------------------------------------------------------------ help: whole lines, examples

COMMANDS = [
    ["validate"],
    ["run"],
    ["serve"],
    ["apply"],
    ["plugins"],
    ["audit", "verify"],
    ["audit", "export"],
    ["audit", "checkpoint"],
    ["audit", "keygen"],
    ["audit", "public-key"],
    ["db", "upgrade"],
    ["secrets", "rotate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_ends_with_examples(command, tmp_path):
    result = flowker(*command, "--help", cwd=tmp_path, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("Examples:\n", 1)
    assert len(examples) == 2, result.stdout
    assert f"flowker {' '.join(command)}" in examples[1] or f"flowker {command[0]}" in examples[1]


@pytest.mark.parametrize("group", [[], ["audit"], ["db"], ["secrets"]], ids=lambda g: " ".join(g) or "flowker")
def test_command_lists_are_not_cut_off(group, tmp_path):
    result = flowker(*group, "--help", cwd=tmp_path, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    assert "..." not in result.stdout.split("Commands:", 1)[1]
    if not group:
        assert "Sync the workflows and executors of DIRECTORY into the database or" in result.stdout
        assert "_FLOWKER_COMPLETE=bash_source flowker" in result.stdout


def test_help_uses_a_wide_terminal(tmp_path):
    result = flowker("audit", "verify", "--help", cwd=tmp_path, COLUMNS="200")
    assert (
        "--db URL|PATH     Database URL or SQLite file path (default: FLOWKER_DATABASE_URL, else "
        "sqlite:///flowker.db)." in result.stdout
    )
