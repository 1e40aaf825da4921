"""``flowker keys create|list|revoke``: API keys stored (hashed) in the database.

The key is printed once, by ``create``; the database keeps only its SHA-256. Every
command finds the database as the others do (``--db``, else FLOWKER_DATABASE_URL, else
``./flowker.db``) and never creates one. A revocation counts from the next request on,
on every server that shares the database.
"""

from __future__ import annotations

import json

import click

from flowker.cli.common import DATABASE_HELP, WholeHelpGroup, announce_database, load_settings, open_existing_database

ROLE_CHOICES = ("viewer", "operator", "editor", "auditor", "admin", "webhook")


@click.group("keys", cls=WholeHelpGroup)
def keys_group():
    """API keys kept in the database: create (shown once), list, revoke."""


def _store(ctx, database_url):
    """(settings, ApiKeyStore, database) for the command's database (which must exist)."""
    from flowker.audit.chain import AuditLog
    from flowker.catalog.api_keys import ApiKeyStore
    from flowker.errors import ConfigurationError
    from flowker.storage.models import ApiKeyRecord, Workflow

    settings = load_settings(ctx, database_url=database_url)
    database = open_existing_database(ctx, settings, database_url, Workflow)
    announce_database(ctx, settings, database_url)
    with database.connection_context():
        if not database.table_exists(ApiKeyRecord._meta.table_name):
            raise ConfigurationError("this database's schema predates stored API keys: run `flowker db upgrade`")
    audit_log = AuditLog.from_settings(settings, database)
    store = ApiKeyStore(database, audit_log, reserved_names=[key.name for key in settings.api_keys])
    return settings, store, database


def _actor():
    from flowker.audit.chain import Actor
    from flowker.catalog.spec_sync import _user

    return Actor("user", f"cli:{_user()}", "127.0.0.1")


@keys_group.command()
@click.option("--name", required=True, help="The key's name: the audit trail shows it (never the key).")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES), help="What the key may do (docs/roles.md).")
@click.option("--workflows", metavar="A,B", help="Limit the key to these workflows (names, comma-separated).")
@click.option("--expires", metavar="DURATION|TIME", help="90d, 12h, 30m, 2w, or an ISO 8601 time (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print {name, role, key, expiresAt} as JSON.")
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def create(ctx, name, role, workflows, expires, as_json, database_url):
    """Create an API key and print it once: it cannot be shown again."""
    from flowker.catalog.api_keys import iso
    from flowker.storage.database import close_database

    from flowker.errors import UnprocessableEntity

    _, store, database = _store(ctx, database_url)
    try:
        stored, key = store.create(name, role, _actor(), workflows=workflows, expires=expires)
    except UnprocessableEntity as exc:
        raise click.UsageError(exc.message) from None  # exit 2: the options are wrong
    finally:
        close_database(database)
    if as_json:
        click.echo(
            json.dumps({"name": stored.name, "role": stored.role, "key": key, "expiresAt": iso(stored.expires_at)})
        )
        return
    scope = ", ".join(stored.workflows) if stored.workflows else "every workflow"
    # Only the key on stdout, so KEY=$(flowker keys create ...) holds just the key.
    click.echo(
        f"created API key {stored.name!r} (role {stored.role}, {scope}, expires "
        f"{iso(stored.expires_at) or 'never'}); the key, shown this once (send it as X-API-Key):",
        err=True,
    )
    click.echo(key)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as a JSON array.")
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def list_keys(ctx, as_json, database_url):
    """List stored API keys: name, role, scope, created, expires, last used (never the key)."""
    from flowker.storage.database import close_database
    from flowker.storage.models import utcnow

    _, store, database = _store(ctx, database_url)
    try:
        keys = store.list()
    finally:
        close_database(database)
    now = utcnow()
    views = [key.to_dict(now) for key in keys]
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    if not views:
        click.echo("no API keys are stored in this database (FLOWKER_API_KEYS are not listed)")
        return
    header = ("NAME", "ROLE", "SCOPE", "STATUS", "CREATED", "EXPIRES", "LAST USED")
    rows = [
        (
            view["name"],
            view["role"],
            ",".join(view["workflows"]) if view["workflows"] else "*",
            view["status"],
            view["createdAt"],
            view["expiresAt"] or "never",
            view["lastUsedAt"] or "never",
        )
        for view in views
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


@keys_group.command()
@click.argument("name")
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def revoke(ctx, name, database_url):
    """Revoke the key NAME: every server refuses it from its next request on."""
    from flowker.storage.database import close_database

    _, store, database = _store(ctx, database_url)
    try:
        store.revoke(name, _actor())
    finally:
        close_database(database)
    click.echo(f"revoked API key {name!r}")
