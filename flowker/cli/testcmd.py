"""``flowker test [PATH...] [--junit FILE] [--coverage]``: run WorkflowTest files offline.

PATHs (default: the current folder) are files or folders (``*.yaml``/``*.yml``, hidden ones skipped). For a file under
``<dir>/workflows/``, ``<dir>/executors/`` or ``<dir>/tests/``, the three sibling folders
are read too, so a pre-commit hook that passes one changed file runs the tests of its
repository with the workflows and executors they need. Specs are checked as
``flowker validate`` checks them, then every case runs on fixtures and virtual time
(flowker.runner.workflow_tests): no socket, no database, no sleeping.

Exit codes: 0 every case passed, 1 a case failed or a spec is invalid, 2 usage error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from flowker.cli.common import load_settings

SIBLING_FOLDERS = ("workflows", "executors", "tests")


def _given_files(paths) -> list[Path]:
    from flowker.validation.loader import find_spec_files

    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise click.UsageError(f"no such file or folder: {path}")
        files.extend(find_spec_files(path) if path.is_dir() else [path])
    return list(dict.fromkeys(files))


def _sibling_files(files: list[Path]) -> list[Path]:
    from flowker.validation.loader import find_spec_files

    given = {path.resolve() for path in files}
    found: dict[Path, None] = {}
    for path in files:
        for parent in path.resolve().parents:
            if parent.name in SIBLING_FOLDERS:
                for name in SIBLING_FOLDERS:
                    folder = parent.parent / name
                    if folder.is_dir():
                        for spec in find_spec_files(folder):
                            if spec.resolve() not in given:
                                found[spec] = None
                break
    return list(found)


def not_a_spec(error) -> bool:
    """True when a file failed to load only because it has no Flowker ``kind``."""
    return len(error.problems) == 1 and error.problems[0].message.startswith(("missing 'kind'", "unknown kind"))


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here.")
@click.option("--coverage", is_flag=True, help="List every conditional branch and edge no case took, per workflow.")
@click.option("--quiet", "-q", is_flag=True, help="Print failed cases and the summary only.")
@click.pass_context
def test_command(ctx, paths, junit_file, coverage, quiet):
    """Run WorkflowTest files against fixtures, offline (no network, no database, no waiting).

    Each case runs the workflow on the real engine, with its executors' requests answered
    by the case's fixtures and retry waits on virtual time. Exit status 0 when every case
    passed, 1 when any failed (or a spec is invalid), 2 on usage errors.
    """
    from flowker.auth.discovery import INSECURE_TRANSPORT_VARIABLE
    from flowker.errors import SpecError
    from flowker.plugins import load_registry
    from flowker.runner.workflow_tests.harness import TestSuite, describe_requests
    from flowker.runner.workflow_tests.reports import coverage_lines, write_junit
    from flowker.validation.checks import validate_documents
    from flowker.validation.loader import load_spec_file

    files = _given_files(paths or (Path("."),))  # DESIGN 11: flowker test [PATH...]
    documents, problems = [], []
    for path in files:
        try:
            documents.append(load_spec_file(path))
        except SpecError as exc:
            if not_a_spec(exc):
                continue  # other YAML a hook passed (a tests/ folder's own fixtures): not ours
            problems.extend(exc.problems)
    for path in _sibling_files(files):
        try:
            documents.append(load_spec_file(path))
        except SpecError:
            continue  # not given: reported when that file itself is tested or validated
    settings = load_settings(ctx)
    # The OIDC token endpoints a test reaches are the in-process fake: an http:// issuer
    # (a provider on the developer's machine in the examples) reaches no network here.
    os.environ.setdefault(INSECURE_TRANSPORT_VARIABLE, "1")
    registry = load_registry(settings)
    problems = problems + validate_documents(documents, registry)
    if problems:
        for problem in problems:
            click.echo(problem.format(), err=True)
        click.echo(f"{len(problems)} problem(s) in the specs; no case was run", err=True)
        sys.exit(1)
    suite = TestSuite(settings, registry, documents)
    if not suite.test_files:
        raise click.UsageError("no kind: WorkflowTest file among the paths given (or beside them in tests/)")

    started = time.perf_counter()
    results = []
    for document in suite.test_files:
        file_results = suite.run_file(document)
        results.extend(file_results)
        if not quiet or any(not r.passed for r in file_results):
            click.echo(f"{document.source} ({document.workflow})")
        for result in file_results:
            if result.passed:
                if not quiet:
                    click.echo(f"  ok    {result.name}  ({result.duration_ms:.1f} ms)")
                continue
            click.echo(f"  FAIL  {result.name}  ({result.location})")
            for failure in result.failures:
                click.echo(f"        {failure}")
            for line in describe_requests(result.requests):
                click.echo(f"        request: {line}")
    seconds = time.perf_counter() - started
    failed = sum(1 for r in results if not r.passed)
    noun = "case" if len(results) == 1 else "cases"
    click.echo(
        f"{len(results)} {noun}: {len(results) - failed} passed, {failed} failed "
        f"({len(suite.test_files)} test file{'s' if len(suite.test_files) != 1 else ''}, {seconds:.2f} s)"
    )
    if coverage:
        for line in coverage_lines(suite.plans, results):
            click.echo(line)
    if junit_file is not None:
        try:
            write_junit(junit_file, results, seconds)
        except OSError as exc:
            raise click.UsageError(f"cannot write {junit_file}: {exc.strerror or exc}") from None
    if failed:
        sys.exit(1)
