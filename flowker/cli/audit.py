"""``flowker audit``: verify, export and checkpoint the audit chain; make signing keys.

Exit codes: 0 the chain (or file) is valid, 1 it is broken, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from flowker.cli.common import DATABASE_HELP, WholeHelpGroup, announce_database, load_settings, open_existing_database


class _ProgressLine:
    """Progress on stderr for long runs: nothing for the first second, then every second."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.started = time.monotonic()
        self.last_shown = self.started
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last_shown < 1.0:
            return
        self.last_shown, self.shown = now, True
        percent = f" ({100 * done // total}%)" if total else ""
        text = f"{self.label} {done}/{total} entries{percent}"
        click.echo(f"\r{text}" if self.tty else text, err=True, nl=not self.tty)

    def finish(self) -> None:
        if self.shown and self.tty:
            click.echo("", err=True)


def _open_migrated(ctx, settings, database_url):
    """The audit chain's database: named when it is not the default, never created here."""
    from flowker.storage.models import AuditEntry

    database = open_existing_database(ctx, settings, database_url, AuditEntry)
    announce_database(ctx, settings, database_url)
    return database


def _public_keys(values):
    from flowker.audit.checkpoints import load_public_key

    return [load_public_key(value) for value in values]


def _report(result, as_json: bool) -> None:
    if as_json:
        body = result.to_dict()
        if result.first_invalid_sequence is not None:
            body["firstInvalidSequence"] = result.first_invalid_sequence
        body["checkpointsVerified"] = result.checkpoints_checked
        body["signaturesChecked"] = result.signatures_checked
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(result.message)
        if result.first_invalid_id:
            click.echo(f"first invalid entry: {result.first_invalid_id}")
    if not result.is_valid:
        # sys.exit, not click's Exit: run_cli calls click with standalone_mode=False, where
        # click returns an Exit's code instead of raising it.
        sys.exit(1)


@click.group(cls=WholeHelpGroup)
def audit():
    """Verify, export and checkpoint the tamper-evident audit chain."""


@audit.command()
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.option("--file", "export_file", type=click.Path(dir_okay=False), help="Verify this export file offline.")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="KEY",
    help="Ed25519 public key, PEM text or file (repeatable, for rotated keys).",
)
@click.option(
    "--witness",
    "witness_url",
    metavar="URL",
    help="Check the database against this witness (file:///DIR or http(s)://...; default: FLOWKER_AUDIT_WITNESS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def verify(ctx, database_url, export_file, public_keys, witness_url, as_json, quiet):
    """Recompute every hash and link; check columns and signed checkpoints.

    With --db (or FLOWKER_DATABASE_URL) the database is verified; the configured
    FLOWKER_AUDIT_SIGNING_KEY and any --public-key are trusted for checkpoints, and every
    checkpoint the witness (--witness or FLOWKER_AUDIT_WITNESS) holds must be in the
    database with the same hashes. With --file an export is verified offline.
    """
    from flowker.audit import checkpoints as cp

    if export_file and database_url:
        raise click.UsageError("give either --db or --file, not both")
    if export_file and witness_url:
        raise click.UsageError("--witness checks a database: give --db, not --file")
    progress = _ProgressLine("verified", enabled=not quiet and not as_json)
    if export_file:
        from flowker.audit.export import verify_export

        if not os.path.exists(export_file):
            raise click.UsageError(f"no such file: {export_file}")
        keys = _public_keys(public_keys)
        if not keys:
            click.echo("warning: no --public-key given: checkpoint signatures are not checked", err=True)
        result = verify_export(export_file, cp.keys_by_id(keys) if keys else None, progress)
    else:
        from flowker.audit.verify import verify_database
        from flowker.audit.witness import open_witness

        settings = load_settings(ctx, database_url=database_url)
        keys = _public_keys(public_keys)
        if settings.audit_signing_key:
            keys.append(cp.load_signing_key(settings.audit_signing_key))
        witness = open_witness(witness_url or settings.audit_witness)
        database = _open_migrated(ctx, settings, database_url)
        result = verify_database(
            database,
            public_keys=cp.keys_by_id(keys) if keys else None,
            checkpoint_interval=settings.audit_checkpoint_interval if keys else None,
            progress=progress,
            witness=witness,
        )
    progress.finish()
    _report(result, as_json)


@audit.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="JSON Lines file to write.")
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.option("--no-sign", is_flag=True, help="Do not sign the end record, even with a signing key configured.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def export(ctx, out_path, database_url, no_sign, quiet):
    """Write every entry and checkpoint to a file that `audit verify --file` checks offline.

    With FLOWKER_AUDIT_SIGNING_KEY set, the end record (entry count, head hash) is signed,
    so a copy cut short anywhere is detected. Exporting only reads the database.
    """
    from flowker.audit import checkpoints as cp
    from flowker.audit.export import export_chain

    settings = load_settings(ctx, database_url=database_url)
    key = cp.load_signing_key(settings.audit_signing_key) if settings.audit_signing_key and not no_sign else None
    if key is None:
        click.echo(
            "warning: no signing key: the export's end is not signed, so offline verification "
            "with a public key will refuse it",
            err=True,
        )
    database = _open_migrated(ctx, settings, database_url)
    progress = _ProgressLine("exported", enabled=not quiet)
    summary = export_chain(
        database,
        out_path,
        signing_key=key,
        checkpoint_interval=settings.audit_checkpoint_interval if key else 0,
        progress=progress,
    )
    progress.finish()
    click.echo(f"exported {summary['entries']} entries and {summary['checkpoints']} checkpoints to {out_path}")


@audit.command()
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.pass_context
def checkpoint(ctx, database_url):
    """Sign the current head now (needs FLOWKER_AUDIT_SIGNING_KEY)."""
    from flowker.audit.chain import AuditLog
    from flowker.errors import ConfigurationError

    settings = load_settings(ctx, database_url=database_url)
    if not settings.audit_signing_key:
        raise ConfigurationError("FLOWKER_AUDIT_SIGNING_KEY is not set")
    log = AuditLog.from_settings(settings, _open_migrated(ctx, settings, database_url))
    with log.database.connection_context():
        signed = log.create_checkpoint()
    if signed is None:
        click.echo("the chain is empty: nothing to sign")
    else:
        click.echo(f"signed checkpoint at sequence {signed.sequence} (head {signed.head_hash}, key {signed.key_id})")


@audit.command()
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the new private key (PEM, mode 0600).",
)
@click.option("--public-out", type=click.Path(dir_okay=False), help="Also write the public key here.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(out_path, public_out, force):
    """Generate an Ed25519 checkpoint signing key (for FLOWKER_AUDIT_SIGNING_KEY)."""
    from flowker.audit import checkpoints as cp

    for path in filter(None, (out_path, public_out)):
        if os.path.exists(path) and not force:
            raise click.UsageError(f"{path} exists (use --force to overwrite)")
    key = cp.generate_signing_key()
    descriptor = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(cp.private_key_pem(key))
    os.chmod(out_path, 0o600)
    if public_out:
        with open(public_out, "w") as handle:
            handle.write(cp.public_key_pem(key))
    click.echo(
        f"wrote private key {out_path} (key id {cp.key_id(key)})"
        + (f" and public key {public_out}" if public_out else "")
    )


@audit.command("public-key")
@click.pass_context
def public_key(ctx):
    """Print the public key of FLOWKER_AUDIT_SIGNING_KEY (give it to auditors)."""
    from flowker.audit import checkpoints as cp
    from flowker.errors import ConfigurationError

    settings = load_settings(ctx)
    if not settings.audit_signing_key:
        raise ConfigurationError("FLOWKER_AUDIT_SIGNING_KEY is not set")
    click.echo(cp.public_key_pem(cp.load_signing_key(settings.audit_signing_key)), nl=False)
