"""``flowker db upgrade``: apply schema migrations."""

from __future__ import annotations

import click

from flowker.cli.common import DATABASE_HELP, WholeHelpGroup, announce_database, load_settings


@click.group(cls=WholeHelpGroup)
def db():
    """Database schema management."""


@db.command()
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def upgrade(ctx, database_url):
    """Apply pending schema migrations (safe when several processes run it at once)."""
    from flowker.storage.database import open_database
    from flowker.storage.migrations import LATEST_VERSION, upgrade as apply_migrations

    settings = load_settings(ctx, database_url=database_url)
    announce_database(ctx, settings, database_url)
    applied = apply_migrations(open_database(settings.database_url))
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))}; schema at version {LATEST_VERSION}")
    else:
        click.echo(f"schema already at version {LATEST_VERSION}")
