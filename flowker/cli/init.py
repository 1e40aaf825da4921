"""``flowker init DIR``: scaffold a spec repository (flowker.scaffold).

Writes workflows/, executors/, tests/ (one workflow, its executor and a passing test),
a .pre-commit-config.yaml running flowker validate and flowker test, and a README stub.
Nothing is overwritten: when a file it would write exists, it writes none.

Exit codes: 0 written, 2 usage error (DIR is a file, or a file would be overwritten).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory):
    """Create a spec repository in DIR: workflows/, executors/, tests/, pre-commit config, README."""
    from flowker.scaffold import existing, scaffold_files, write_scaffold

    files = scaffold_files(directory.resolve().name or "flowker-workflows")
    clashes = existing(directory, files)
    if clashes:
        raise click.UsageError(f"{directory} already has {', '.join(clashes)}; nothing was written")
    try:
        written = write_scaffold(directory, files)
    except OSError as exc:
        raise click.UsageError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    for path in written:
        click.echo(f"  created {path}")
    click.echo(f"next: cd {directory} && flowker validate . && flowker test .  (then: git init && pre-commit install)")
