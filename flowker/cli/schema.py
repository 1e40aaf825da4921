"""``flowker schema --out DIR``: write the JSON Schemas of spec files for editors.

Writes every schema shipped with Flowker (``workflow.schema.json``,
``executor.schema.json``, and any other ``*.schema.json`` of the specs package), the
Executor one with each installed auth type's config schema as a conditional on
``authentication.type`` (:mod:`flowker.validation.editor_schemas`). Point the YAML
language server at them (docs/editors.md).

Exit codes: 0 written, 1 a file could not be written, 2 usage error.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowker.cli.common import fail, load_settings


@click.command("schema")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the *.schema.json files into (created if missing; files there are replaced).",
)
@click.pass_context
def schema(ctx, out_dir: Path):
    """Write the Workflow and Executor JSON Schemas (with the installed auth types) for editors."""
    from flowker.plugins import load_registry
    from flowker.validation.editor_schemas import editor_schemas

    registry = load_registry(load_settings(ctx))
    for _distribution, message in registry.load_errors:
        click.echo(f"flowker: warning: {message}", err=True)
    schemas = editor_schemas(registry.auth_types)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, document in schemas.items():
            target = out_dir / name
            target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            click.echo(str(target))
    except OSError as exc:
        fail(f"flowker: cannot write to {out_dir}: {exc.strerror or exc}", 1)
    click.echo(
        f"{len(schemas)} schemas written, auth types: {', '.join(sorted(registry.auth_types))} "
        "(editor set-up: docs/editors.md)",
        err=True,
    )
