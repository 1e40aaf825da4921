"""The plugin manager factory and the registry it fills.

Order: hookspecs, then plugins blocked by ``FLOWKER_DISABLED_PLUGINS``, then the
``flowker`` entry-point group, then the built-ins (registered exactly like
third-party plugins), then ``check_pending()``. Nothing is loaded at import time.
A plugin that fails to import is reported with its distribution and the rest load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from typing import Iterable

import pluggy

from flowker import __version__, hookspecs
from flowker.errors import PluginError
from flowker.registry import PluginInfo, Registry

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flowker"

# Built-in plugins: modules whose hookimpls register Flowker's own types.
BUILTIN_PLUGINS = (
    "flowker.auth.builtin",
    "flowker.auth.oidc",
    "flowker.actions",
)
BUILTIN_DISTRIBUTION = "flowker"


def create_plugin_manager(
    disabled: Iterable[str] = (),
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> tuple[pluggy.PluginManager, dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """A plugin manager with every enabled plugin registered.

    Returns the manager, a map plugin name -> (distribution, version), and the load
    errors as (distribution, message) pairs.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name in disabled:
        manager.set_blocked(name)

    origins: dict[str, tuple[str, str]] = {}
    errors: list[tuple[str, str]] = []
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in entry_points:
        distribution, version = _distribution_of(entry_point)
        if manager.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            message = f"plugin {entry_point.name!r} from {distribution} failed to load: {type(exc).__name__}: {exc}"
            logger.error("%s", message)
            errors.append((distribution, message))
            continue
        if manager.get_plugin(entry_point.name) is not None:
            other = origins.get(entry_point.name, ("?", "?"))[0]
            raise PluginError(f"plugin name {entry_point.name!r} is used by both {other} and {distribution}")
        manager.register(plugin, name=entry_point.name)
        origins[entry_point.name] = (distribution, version)

    for module_name in BUILTIN_PLUGINS:
        if manager.is_blocked(module_name):
            continue
        manager.register(importlib.import_module(module_name), name=module_name)
        origins[module_name] = (BUILTIN_DISTRIBUTION, __version__)

    manager.check_pending()
    return manager, origins, errors


def _distribution_of(entry_point) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return (f"<entry point {entry_point.value}>", "?")
    return (dist.metadata["Name"] or dist.name, dist.version)


def load_registry(settings=None, entry_points=None) -> Registry:
    """Load the plugins and collect their auth and action types into a Registry.

    Each hook implementation is called on its own so the registry knows which
    distribution registered which type (a clash names both).
    """
    disabled = getattr(settings, "disabled_plugins", ()) if settings is not None else ()
    manager, origins, errors = create_plugin_manager(disabled, entry_points)
    registry = Registry()
    registry.load_errors.extend(errors)
    provided: dict[str, dict[str, list[str]]] = {}
    for hook_name, kind, table in (
        ("flowker_register_auth_types", "auth", "_auth_types"),
        ("flowker_register_action_types", "action", "_action_types"),
    ):
        hook = getattr(manager.hook, hook_name)
        # pluggy calls later-registered implementations first; we want registration order.
        for implementation in reversed(hook.get_hookimpls()):
            distribution = origins.get(implementation.plugin_name, (BUILTIN_DISTRIBUTION, __version__))[0]
            registry.current_distribution = distribution
            before = set(getattr(registry, table))
            implementation.function(registry=registry)
            added = sorted(set(getattr(registry, table)) - before)
            provided.setdefault(implementation.plugin_name, {"auth": [], "action": []})[kind].extend(added)
    registry.current_distribution = BUILTIN_DISTRIBUTION
    for plugin_name, (distribution, version) in origins.items():
        types = provided.get(plugin_name, {"auth": [], "action": []})
        registry.plugins.append(
            PluginInfo(
                name=plugin_name,
                distribution=distribution,
                version=version,
                auth_types=tuple(types["auth"]),
                action_types=tuple(types["action"]),
            )
        )
    return registry
