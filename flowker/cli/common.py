"""What every subcommand shares: settings loading, the database every command finds
the same way, help formatting and error-to-exit-code mapping."""

from __future__ import annotations

import os
import sys

import click

from flowker.errors import ConfigurationError, FlowkerError

# Help is wrapped at the terminal's width up to this, not click's 80 columns, so option
# descriptions and the command list are not cut short.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 120}

DATABASE_HELP = "Database URL or SQLite file path (default: FLOWKER_DATABASE_URL, else sqlite:///flowker.db)."


def load_settings(ctx: click.Context, **overrides):
    """Settings from the bootstrap file and environment, with command-line overrides.

    The database setting, from ``--db`` or FLOWKER_DATABASE_URL alike, may be a URL or a
    plain SQLite file path (``flowker-data/flowker.db``)."""
    from flowker.settings import Settings

    config_file = (ctx.find_root().obj or {}).get("config_file")
    settings = Settings.load(config_file=config_file)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        settings = settings.replace(**overrides)
    url = database_url_from(settings.database_url)
    return settings if url == settings.database_url else settings.replace(database_url=url)


def database_url_from(value: str) -> str:
    """A database URL from a URL or a SQLite file path (made absolute, so messages name it)."""
    if "://" in value or value.startswith("sqlite:"):
        return value
    return "sqlite:///" + os.path.abspath(value)


def database_source(ctx: click.Context, option_value: str | None) -> str:
    """Which setting named the database, for messages."""
    if option_value is not None:
        return "--db"
    if os.environ.get("FLOWKER_DATABASE_URL"):
        return "FLOWKER_DATABASE_URL"
    if (ctx.find_root().obj or {}).get("config_file") or os.environ.get("FLOWKER_CONFIG"):
        return "the --config file's database_url"
    return "the default"


def announce_database(ctx: click.Context, settings, option_value: str | None) -> None:
    """Say on stderr which database a command uses when it is not the default one."""
    from flowker.settings import Settings
    from flowker.storage.database import database_label

    if settings.database_url != Settings.database_url:
        click.echo(
            f"flowker: database {database_label(settings.database_url)} (from {database_source(ctx, option_value)})",
            err=True,
        )


def open_existing_database(ctx: click.Context, settings, option_value: str | None, table) -> object:
    """Open the settings' database for a command that reads it: a SQLite file that does
    not exist is named (and not created), and so is a database without Flowker's tables."""
    from flowker.storage.database import database_label, missing_sqlite_file, open_database

    missing = missing_sqlite_file(settings.database_url)
    if missing:
        raise ConfigurationError(
            f"no database at {missing} (from {database_source(ctx, option_value)}): "
            "set FLOWKER_DATABASE_URL or --db to the database Flowker serves "
            "(the quick start's is flowker-data/flowker.db)"
        )
    database = open_database(settings.database_url)
    with database.connection_context():
        if not database.table_exists(table._meta.table_name):
            raise ConfigurationError(
                f"database {database_label(settings.database_url)} has no Flowker tables: "
                "is it the right one? `flowker db upgrade` creates them"
            )
    return database


def run_cli(command: click.Command, argv=None) -> int:
    """Run the click command, turning Flowker errors into messages and exit codes."""
    try:
        result = command.main(args=argv, prog_name="flowker", standalone_mode=False)
        # With standalone_mode=False click returns ctx.exit(n)'s code instead of exiting.
        if isinstance(result, int):
            return result
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code  # 2 for usage errors
    except FlowkerError as exc:
        click.echo(f"flowker: {exc.message}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def fail(message: str, exit_code: int = 1) -> None:
    """Print a message and exit with ``exit_code`` (1: the work failed, 2: usage)."""
    click.echo(message, err=True)
    sys.exit(exit_code)


class WholeHelpGroup(click.Group):
    """A group whose help lists each command's whole first sentence (wrapped, never cut
    with "...") and whose commands' help ends with examples (flowker.cli.help_examples)."""

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None and command.epilog is None:
            from flowker.cli.help_examples import epilog_for

            path = name if ctx.parent is None else f"{ctx.command_path.split(' ', 1)[-1]} {name}"
            command.epilog = epilog_for(path)
        return command

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
