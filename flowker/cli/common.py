"""What every subcommand shares: settings loading and error-to-exit-code mapping."""

from __future__ import annotations

import sys

import click

from flowker.errors import FlowkerError


def load_settings(ctx: click.Context, **overrides):
    """Settings from the bootstrap file and environment, with command-line overrides."""
    from flowker.settings import Settings

    config_file = (ctx.find_root().obj or {}).get("config_file")
    settings = Settings.load(config_file=config_file)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return settings.replace(**overrides) if overrides else settings


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
