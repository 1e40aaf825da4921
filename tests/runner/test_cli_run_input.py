"""``flowker run`` refuses an input its trigger's inputSchema does not accept: every
problem listed, exit 2 (a usage error: the --input given is wrong), nothing stored in the
kept database, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import run_flowker

REPO = Path(__file__).resolve().parents[2]

WORKFLOW = """\
kind: Workflow
name: greet
nodes:
  - id: start
    type: trigger
    data:
      triggerType: manual
      inputSchema:
        type: object
        additionalProperties: false
        required: [name, count]
        properties:
          name: {type: string, minLength: 1}
          count: {type: integer, minimum: 1}
          tags: {type: array, items: {type: string}}
  - id: out
    type: action
    data: {actionType: set_output, output: {greeting: "hello ${{ workflow.name }}"}}
edges:
  - {source: start, target: out}
"""


def stored(url: str) -> tuple[int, int]:
    from flowker.storage.database import open_database

    database = open_database(url)
    try:
        with database.connection_context():
            executions = database.execute_sql("SELECT count(*) FROM execution").fetchone()[0]
            entries = database.execute_sql("SELECT count(*) FROM audit_entry").fetchone()[0]
        return executions, entries
    finally:
        database.close()


def test_a_bad_input_is_refused_with_every_problem_and_nothing_is_stored(tmp_path, database_url):
    spec = tmp_path / "greet.yaml"
    spec.write_text(WORKFLOW)
    good = run_flowker("run", spec, "--input", json.dumps({"name": "ada", "count": 2}), "--db", database_url)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {"greeting": "hello ada"}
    before = stored(database_url)

    bad = run_flowker(
        "run", spec, "--input", json.dumps({"count": 0, "tags": ["a", 3], "nmae": "ada"}), "--db", database_url
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stdout == ""
    lines = bad.stderr.splitlines()
    assert lines[0] == f"{spec}: the input does not match the trigger's inputSchema:"
    assert sorted(lines[1:-1]) == [
        "  /count: must be at least 1",
        "  /name: is required",
        "  /nmae: is not an allowed field (did you mean 'name'?)",
        "  /tags/1: must be of type string",
    ]
    assert lines[-1] == "4 problem(s) in --input; nothing was run"
    assert "-> [1/" not in bad.stderr
    assert stored(database_url) == before

    # No --input at all is the input {}.
    empty = run_flowker("run", spec, "--db", database_url)
    assert empty.returncode == 2 and "  /name: is required" in empty.stderr and "  /count: is required" in empty.stderr
    assert stored(database_url) == before
