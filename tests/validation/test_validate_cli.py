"""`flowker validate` as users run it: a real subprocess, exit codes 0/1/2."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
INVALID = REPO / "tests" / "specs" / "invalid"
REFERENCE_EXECUTORS = REPO / "tests" / "specs" / "reference" / "executors"
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


def test_examples_are_valid(run_flowker):
    result = run_flowker("validate", "examples/")
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list(EXAMPLES.rglob("*.yaml")))
    assert result.stdout.strip() == f"{count} files checked: all valid"


def test_an_invalid_file_exits_1_with_file_line_column_message(run_flowker):
    result = run_flowker("validate", "tests/specs/invalid/cycle.yaml")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == ["tests/specs/invalid/cycle.yaml:10:5: cycle: a -> b -> a (at $.edges[2])"]
    assert result.stderr.strip() == "1 file checked: 1 problem in 1 of them"


def test_the_whole_invalid_folder_reports_every_expected_problem(run_flowker):
    result = run_flowker("validate", "--executors", REFERENCE_EXECUTORS, "tests/specs/invalid")
    assert result.returncode == 1
    for line in result.stdout.splitlines():
        assert PROBLEM_LINE.match(line) or line.startswith("tests/specs/invalid/"), line
    for expected_file in sorted(INVALID.glob("*.expected")):
        source = f"tests/specs/invalid/{expected_file.stem}.yaml"
        for expected in expected_file.read_text().splitlines():
            assert f"{source}:{expected}" in result.stdout, (source, expected)
    files_with_problems = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
    assert files_with_problems == {f"tests/specs/invalid/{p.name}" for p in INVALID.glob("*.yaml")}


def test_usage_errors_exit_2(run_flowker, tmp_path):
    no_paths = run_flowker("validate")
    assert no_paths.returncode == 2
    assert "give at least one file or folder" in no_paths.stderr
    missing = run_flowker("validate", tmp_path / "absent")
    assert missing.returncode == 2
    assert "no such file or folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_flowker("validate", tmp_path / "empty")
    assert empty.returncode == 2
    assert "no *.yaml or *.yml files" in empty.stderr


def test_folders_recurse_skip_hidden_and_resolve_sibling_executors(run_flowker, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "payment-approval", project)
    hidden = project / ".github" / "workflows"
    hidden.mkdir(parents=True)
    (hidden / "ci.yml").write_text("on: push\njobs: {}\n")  # not a spec: skipped
    (project / ".pre-commit-config.yaml").write_text("repos: []\n")  # hidden file: skipped
    (project / "workflows" / "payment-approval.yaml").rename(project / "workflows" / "payment-approval.yml")

    whole = run_flowker("validate", project)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert whole.stdout.strip() == "4 files checked: all valid"  # the workflow, 2 executors, its test

    # A pre-commit hook passes only the changed workflow: executors come from ../executors.
    one = run_flowker("validate", project / "workflows" / "payment-approval.yml")
    assert one.returncode == 0, one.stdout + one.stderr

    # Without the sibling folder the references do not resolve.
    shutil.move(project / "executors", tmp_path / "elsewhere")
    alone = run_flowker("validate", project / "workflows" / "payment-approval.yml")
    assert alone.returncode == 1
    assert "unknown executor 'fraud-check'" in alone.stdout
    with_option = run_flowker("validate", "--executors", tmp_path / "elsewhere", project / "workflows")
    assert with_option.returncode == 0, with_option.stdout + with_option.stderr


def test_problems_in_several_files_are_all_listed_with_quiet(run_flowker, tmp_path):
    (tmp_path / "a.yaml").write_text("kind: Workflow\nname: a\nnodes: []\nedges: []\nextra: 1\n")
    (tmp_path / "b.yml").write_text("kind: Executor\nname: b\n")
    result = run_flowker("validate", "-q", tmp_path)
    assert result.returncode == 1
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        # Within a file the root causes come first: unknown fields, then missing ones.
        f"{tmp_path}/a.yaml:5:1: unknown field 'extra' (at $.extra)",
        f"{tmp_path}/a.yaml:3:8: 'nodes' must be a list of at least 1 items (at $.nodes)",
        f"{tmp_path}/b.yml:1:1: missing required field 'baseUrl'",
        f"{tmp_path}/b.yml:1:1: missing required field 'endpoints'",
        f"{tmp_path}/b.yml:1:1: missing required field 'authentication'",
    ]


def test_pre_commit_hook_selects_spec_files_only():
    import yaml

    hooks = {hook["id"]: hook for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks["flowker-validate"]
    assert hook["language"] == "python"
    assert hook["entry"] == "flowker validate" and hook["require_serial"] is True
    files = re.compile(hook["files"])
    assert "exclude" not in hook  # a user's own exclude would replace ours

    def selected(path):
        return bool(files.search(path))

    for path in ("workflows/a.yaml", "examples/x/executors/b.yml", "deploy/workflows/sub/c.yaml"):
        assert selected(path), path
    for path in (
        ".github/workflows/ci.yml",
        "config/app.yaml",
        "a/.github/workflows/x.yaml",
        "workflows/readme.md",
        "myworkflows/a.yaml",
    ):
        assert not selected(path), path
    # Test files (examples/*/tests/) are the flowker-test hook's (tests/workflow_tests).
    tests_hook = re.compile(hooks["flowker-test"]["files"])
    for path in EXAMPLES.rglob("*.yaml"):
        relative = path.relative_to(REPO).as_posix()
        assert selected(relative) or ("/tests/" in relative and tests_hook.search(relative)), relative
