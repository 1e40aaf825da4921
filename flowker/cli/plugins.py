"""``flowker plugins [--json]``: what plugins are loaded and which types each provides.

Exit code 0 when every plugin loaded, 1 when one failed to load (it is listed under
"load errors"), 2 when plugins clash (two registering the same type name).
"""

from __future__ import annotations

import json

import click

from flowker.cli.common import load_settings


def _as_dict(registry) -> dict:
    return {
        "plugins": [
            {
                "name": plugin.name,
                "distribution": plugin.distribution,
                "version": plugin.version,
                "authTypes": list(plugin.auth_types),
                "actionTypes": list(plugin.action_types),
            }
            for plugin in registry.plugins
        ],
        "disabled": [{"name": name, "distribution": dist} for name, dist in registry.disabled_plugins],
        "loadErrors": [{"distribution": dist, "message": message} for dist, message in registry.load_errors],
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins(ctx, as_json):
    """List loaded plugins, their package and version, and the auth and action types each provides."""
    from flowker.plugins import load_registry

    registry = load_registry(load_settings(ctx))
    data = _as_dict(registry)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        rows = [["PLUGIN", "PACKAGE", "VERSION", "AUTH TYPES", "ACTION TYPES"]]
        for plugin in data["plugins"]:
            rows.append(
                [
                    plugin["name"],
                    plugin["distribution"],
                    plugin["version"],
                    ", ".join(plugin["authTypes"]) or "-",
                    ", ".join(plugin["actionTypes"]) or "-",
                ]
            )
        click.echo(_table(rows))
        if data["disabled"]:
            click.echo("\ndisabled (FLOWKER_DISABLED_PLUGINS):")
            for item in data["disabled"]:
                click.echo(f"  {item['name']} ({item['distribution']})")
        if data["loadErrors"]:
            click.echo("\nload errors:", err=True)
            for item in data["loadErrors"]:
                click.echo(f"  {item['distribution']}: {item['message']}", err=True)
    if data["loadErrors"]:
        ctx.exit(1)
