"""The ``flowker`` command line.

Subcommands live in their own modules and are imported only when invoked, so
``flowker validate`` in a pre-commit hook starts fast. Exit codes follow the error
class (see :mod:`flowker.errors`): 0 success, 1 the work failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import importlib
import sys

import click

from flowker import __version__
from flowker.cli.common import CONTEXT_SETTINGS, WholeHelpGroup

# name -> "module:attribute"
SUBCOMMANDS = {
    "validate": "flowker.cli.validate:validate",
    "run": "flowker.cli.run:run",
    "serve": "flowker.cli.serve:serve",
    "apply": "flowker.cli.apply:apply",
    "plugins": "flowker.cli.plugins:plugins",
    "audit": "flowker.cli.audit:audit",
    "db": "flowker.cli.db:db",
    "keys": "flowker.cli.keys:keys_group",
    "secrets": "flowker.cli.secrets:secrets_group",
    "witness": "flowker.cli.witness:witness",
    "schema": "flowker.cli.schema:schema",
    "test": "flowker.cli.testcmd:test_command",
    "init": "flowker.cli.init:init",
    "worker": "flowker.cli.worker:worker",
}


class LazyGroup(WholeHelpGroup):
    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        self.commands[name] = getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="\b\nGet started: flowker validate examples/ && flowker run --help\n"
    'Shell completion: eval "$(_FLOWKER_COMPLETE=bash_source flowker)"  (docs/cli.md)',
)
@click.version_option(__version__, prog_name="flowker")
@click.option(
    "--config",
    "config_file",
    envvar="FLOWKER_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML bootstrap file of settings (environment variables win).",
)
@click.pass_context
def cli(ctx, config_file):
    """Flowker: declarative workflows, auth plugins, REST and an audit chain."""
    ctx.obj = {"config_file": config_file}


def main(argv=None):
    from flowker.cli.common import run_cli

    sys.exit(run_cli(cli, argv))
