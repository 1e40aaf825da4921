"""``flowker validate PATH...``: lint workflow and executor spec files.

Folders are searched recursively for ``*.yaml``/``*.yml`` (hidden files and
folders such as ``.git`` are skipped). Workflows resolve executors among all files given; for a
file under ``<dir>/workflows/``, the sibling ``<dir>/executors/`` folder is read too
(for name resolution only), so a pre-commit hook that passes just the changed
workflow still resolves its executors. ``--executors DIR`` adds more such folders.

Exit codes: 0 all valid, 1 problems found, 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowker.cli.common import load_settings
from flowker.validation.loader import find_spec_files


def _sibling_executor_folders(files: list[Path]) -> set[Path]:
    folders = set()
    for path in files:
        for parent in path.resolve().parents:
            if parent.name == "workflows":
                candidate = parent.parent / "executors"
                if candidate.is_dir():
                    folders.add(candidate)
                break
    return folders


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--executors",
    "executor_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also read executors from DIR to resolve names (their problems are not reported). Repeatable.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print problems only, no summary line.")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also print the next 3 fire times of each schedule trigger (with UTC offsets).",
)
@click.pass_context
def validate(ctx, paths, executor_dirs, quiet, verbose):
    """Check workflow and executor spec files (files or folders).

    Prints FILE:LINE:COLUMN: MESSAGE for every problem. Exit status 0 when every
    file is valid, 1 when any problem was found, 2 on usage errors. With --verbose,
    each schedule trigger's next 3 fire times follow.
    """
    from flowker.errors import SpecError
    from flowker.plugins import load_registry
    from flowker.security.secret_policy import SecretReferencePolicy
    from flowker.validation.checks import validate_documents
    from flowker.validation.documents import ExecutorSpec
    from flowker.validation.loader import load_spec_file
    from flowker.validation.problems import sorted_unique

    if not paths:
        raise click.UsageError("give at least one file or folder to validate")
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise click.UsageError(f"no such file or folder: {path}")
        files.extend(find_spec_files(path) if path.is_dir() else [path])
    files = list(dict.fromkeys(files))  # a file named twice is checked once
    if not files:
        raise click.UsageError("no *.yaml or *.yml files under the paths given")

    documents, problems = [], []
    for path in files:
        try:
            documents.append(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)

    given = {path.resolve() for path in files}
    reference_executors = []
    folders = set(executor_dirs) | _sibling_executor_folders(files)
    for folder in sorted(folders):
        for path in find_spec_files(folder):
            if path.resolve() in given:
                continue
            try:
                document = load_spec_file(path)
            except SpecError:
                continue  # reported when that file itself is validated
            if isinstance(document, ExecutorSpec):
                reference_executors.append(document)

    settings = load_settings(ctx)
    registry = load_registry(settings)
    for _distribution, message in registry.load_errors:
        # Its types will show up as unknown below; say why.
        click.echo(f"flowker: warning: {message}", err=True)
    # The server's rules for secret references, with this environment's settings.
    secret_policy = SecretReferencePolicy.from_settings(settings)
    problems.extend(
        validate_documents(documents, registry, reference_executors=reference_executors, secret_policy=secret_policy)
    )
    problems = sorted_unique(problems)

    for problem in problems:
        click.echo(problem.format())
    if verbose:
        for line in schedule_lines(documents):
            click.echo(line)
    summary = _summary(len(files), problems)
    if problems:
        if not quiet:
            click.echo(summary, err=True)
        # SystemExit rather than a return value: the status must be 1 whatever wraps the command.
        sys.exit(1)
    if not quiet:
        click.echo(summary)


def schedule_lines(documents, now=None) -> list[str]:
    """For each workflow with a valid schedule trigger: where it is, and its next 3 fire times."""
    import datetime as dt

    from flowker.validation.schedule_spec import iso_utc, next_fire_times, schedule_data, schedule_of
    from flowker.validation.documents import WorkflowSpec

    now = now or dt.datetime.now(dt.timezone.utc)
    lines = []
    for document in documents:
        if not isinstance(document, WorkflowSpec):
            continue
        schedule = schedule_of(document.body)
        if schedule is None:
            continue
        index = next(schedule_data(document.body))[0]
        line, column = document.location_of(("nodes", index, "data", "cron"))
        where = f"{document.source}:{line}:{column or 1}" if line else document.source
        lines.append(
            f"{where}: workflow {document.name!r} runs on {schedule.cron!r} in {schedule.timezone} "
            f"(catchUp: {schedule.catch_up}); next fire times:"
        )
        for tick in next_fire_times(schedule, now):
            lines.append(f"  {tick.isoformat()}  ({iso_utc(tick)})")
    return lines


def _summary(file_count: int, problems) -> str:
    noun = "file" if file_count == 1 else "files"
    if not problems:
        return f"{file_count} {noun} checked: all valid"
    bad_files = len({problem.source for problem in problems})
    plural = "" if len(problems) == 1 else "s"
    return f"{file_count} {noun} checked: {len(problems)} problem{plural} in {bad_files} of them"
