"""``flowker secrets rotate``: re-encrypt stored literal secrets with the newest key.

Rotation: put the new key first in ``FLOWKER_SECRET_KEY`` (``new,old``), restart, run
``flowker secrets rotate``, then drop the old key. Both keys decrypt in between.
"""

from __future__ import annotations

import click

from flowker.cli.common import DATABASE_HELP, WholeHelpGroup, announce_database, load_settings, open_existing_database


@click.group("secrets", cls=WholeHelpGroup)
def secrets_group():
    """Secrets stored encrypted at rest."""


@secrets_group.command()
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def rotate(ctx, database_url):
    """Re-encrypt every stored executor secret with the newest FLOWKER_SECRET_KEY key.

    Runs in one transaction: either every secret is re-encrypted or none is. Prints
    counts only, never values.
    """
    from flowker.security.secrets import SecretBox, SecretKeyError

    from flowker.storage.models import Executor

    settings = load_settings(ctx, database_url=database_url)
    box = SecretBox.from_settings(settings, create_key_file=False)
    if box is None:
        raise SecretKeyError("no secret key is configured (FLOWKER_SECRET_KEY): there is nothing to rotate with")
    open_existing_database(ctx, settings, database_url, Executor)  # named if missing, never created
    announce_database(ctx, settings, database_url)
    executors, secrets = rotate_executor_secrets(settings.database_url, box)
    click.echo(f"re-encrypted {secrets} secret(s) in {executors} executor(s) with the newest key")


def rotate_executor_secrets(database_url: str, box) -> tuple[int, int]:
    """Re-encrypt in one transaction; returns (executors changed, secrets re-encrypted)."""
    from flowker.errors import ConfigurationError
    from flowker.storage.database import bind_database, close_database, connection, is_postgres, write_transaction
    from flowker.storage.models import Executor

    database = bind_database(database_url)
    changed_executors = changed_secrets = 0
    try:
        with connection(database):
            if not database.table_exists(Executor._meta.table_name):
                raise ConfigurationError("the database has no executors table: run `flowker db upgrade` first")
            with write_transaction(database):
                query = Executor.select(Executor.id, Executor.name, Executor.spec).order_by(Executor.id)
                if is_postgres(database):
                    query = query.for_update()  # concurrent edits wait for the rotation
                for executor in query:
                    try:
                        spec, count = box.rotate_fields(executor.spec)
                    except ConfigurationError as exc:
                        raise type(exc)(f"executor {executor.name!r}: {exc.message}") from None
                    if count:
                        Executor.update(spec=spec).where(Executor.id == executor.id).execute()
                        changed_executors += 1
                        changed_secrets += count
    finally:
        close_database(database)
    return changed_executors, changed_secrets
