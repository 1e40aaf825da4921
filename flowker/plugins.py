"""The plugin manager factory and the registry it fills.

Order: hookspecs, then plugins blocked by ``FLOWKER_DISABLED_PLUGINS``, then the
``flowker`` entry-point group, then the built-ins (registered exactly like
third-party plugins), then ``check_pending()``. Nothing is loaded at import time.
A plugin that fails to import is reported with its distribution and the rest load.

A disabled name matches a plugin name (an entry-point name such as ``hmac``, or a
built-in module such as ``flowker.auth.oidc``) or a distribution name
(``flowker-auth-hmac``); a disabled entry point is never imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass, field
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


@dataclass
class LoadedPlugins:
    """What :func:`create_plugin_manager` did, for the registry and ``flowker plugins``."""

    origins: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin name -> (distribution, version)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (distribution, message)
    disabled: list[tuple[str, str]] = field(default_factory=list)  # (plugin name, distribution)


def _normalized(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def create_plugin_manager(
    disabled: Iterable[str] = (),
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> tuple[pluggy.PluginManager, dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """A plugin manager with every enabled plugin registered.

    Returns the manager, a map plugin name -> (distribution, version), and the load
    errors as (distribution, message) pairs. :func:`load_plugins` returns more detail.
    """
    manager, loaded = load_plugins(disabled, entry_points)
    return manager, loaded.origins, loaded.errors


def load_plugins(
    disabled: Iterable[str] = (),
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> tuple[pluggy.PluginManager, LoadedPlugins]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    disabled = tuple(name for name in disabled if name and name.strip())
    disabled_keys = {_normalized(name) for name in disabled}
    for name in disabled:
        manager.set_blocked(name.strip())

    loaded = LoadedPlugins()
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in entry_points:
        if getattr(entry_point, "group", ENTRY_POINT_GROUP) != ENTRY_POINT_GROUP:
            continue
        distribution, version = _distribution_of(entry_point)
        if manager.is_blocked(entry_point.name) or _normalized(distribution) in disabled_keys:
            loaded.disabled.append((entry_point.name, distribution))
            continue
        if entry_point.name in loaded.origins:
            other = loaded.origins[entry_point.name][0]
            if other == distribution:
                continue  # the same distribution seen twice on sys.path
            raise PluginError(f"plugin name {entry_point.name!r} is used by both {other} and {distribution}")
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            message = (f"plugin {entry_point.name!r} from {distribution} {version} failed to load: "
                       f"{type(exc).__name__}: {exc}")
            logger.error("%s", message)
            loaded.errors.append((distribution, message))
            continue
        loaded.origins[entry_point.name] = (distribution, version)

    for module_name in BUILTIN_PLUGINS:
        if manager.is_blocked(module_name):
            loaded.disabled.append((module_name, BUILTIN_DISTRIBUTION))
            continue
        manager.register(importlib.import_module(module_name), name=module_name)
        loaded.origins[module_name] = (BUILTIN_DISTRIBUTION, __version__)

    manager.check_pending()
    return manager, loaded


def _distribution_of(entry_point) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return (f"<entry point {entry_point.value}>", "?")
    return (dist.metadata["Name"] or dist.name, dist.version)


def load_registry(settings=None, entry_points=None) -> Registry:
    """Load the plugins and collect their auth and action types into a Registry.

    Each hook implementation is called on its own so the registry knows which
    distribution registered which type (a clash names both). Built-ins are called
    first, so a third-party type reusing a built-in name is the one reported as clashing.
    """
    disabled = getattr(settings, "disabled_plugins", ()) if settings is not None else ()
    manager, loaded = load_plugins(disabled, entry_points)
    registry = Registry()
    registry.load_errors.extend(loaded.errors)
    registry.disabled_plugins.extend(loaded.disabled)
    provided: dict[str, dict[str, list[str]]] = {}
    failed: set[str] = set()
    for hook_name, kind, table in (
        ("flowker_register_auth_types", "auth", "_auth_types"),
        ("flowker_register_action_types", "action", "_action_types"),
    ):
        hook = getattr(manager.hook, hook_name)
        # get_hookimpls() lists in registration order and pluggy calls the other way round
        # (last registered first): the built-ins, registered last, come first.
        for implementation in reversed(hook.get_hookimpls()):
            plugin_name = implementation.plugin_name
            if plugin_name in failed:
                continue
            distribution = loaded.origins.get(plugin_name, (BUILTIN_DISTRIBUTION, __version__))[0]
            registry.current_distribution = distribution
            before = set(getattr(registry, table))
            try:
                implementation.function(registry=registry)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin whose hook breaks is reported, not fatal
                message = (f"plugin {plugin_name!r} from {distribution} failed in {hook_name}: "
                           f"{type(exc).__name__}: {exc}")
                logger.error("%s", message)
                registry.load_errors.append((distribution, message))
                failed.add(plugin_name)
                # No half-registered plugin: drop what it registered in this and earlier hooks.
                for name in set(getattr(registry, table)) - before:
                    registry.unregister(kind, name)
                for earlier_kind, names in provided.pop(plugin_name, {}).items():
                    for name in names:
                        registry.unregister(earlier_kind, name)
                continue
            added = sorted(set(getattr(registry, table)) - before)
            provided.setdefault(plugin_name, {"auth": [], "action": []})[kind].extend(added)
    registry.current_distribution = BUILTIN_DISTRIBUTION
    for plugin_name, (distribution, version) in loaded.origins.items():
        if plugin_name in failed:
            continue
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
