"""The plugin manager factory and the registry it fills.

:func:`create_plugin_manager` builds the manager: hookspecs, then plugins blocked by
``FLOWKER_DISABLED_PLUGINS``, then the ``flowker`` entry-point group, then the built-ins
(registered exactly like third-party plugins), then ``check_pending()``. Nothing is
loaded at import time. A plugin that fails to import is reported with its distribution
and the rest load; two distributions using one plugin name fail naming both.

:func:`collect_registry` then calls each hook once, through ``manager.hook``, so pluggy's
ordering (``tryfirst``/``trylast``), wrappers and call monitoring apply as for any
pluggy project. Built-ins are registered last, so pluggy calls them first: a
third-party type reusing a built-in name is the one reported as clashing.

Each built-in type is its own plugin, named after the type (``bearer``, ``oidc_user``...),
so ``FLOWKER_DISABLED_PLUGINS=bearer`` switches off just that one, e.g. to let a package
register its own ``bearer``. A disabled name matches a plugin name (an entry-point name
such as ``hmac``, or a built-in's), a built-in's module (``flowker.auth.oidc`` disables
both OIDC types) or a distribution name (``flowker-auth-hmac``); a disabled entry point
is never imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from flowker import __version__, hookspecs
from flowker.errors import PluginError
from flowker.registry import PluginInfo, Registry, TypeNameError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flowker"
BUILTIN_DISTRIBUTION = "flowker"


@dataclass(frozen=True)
class BuiltinPlugin:
    """A built-in plugin: its plugin name, the module holding it, and either the auth type
    class it registers (one type per plugin) or nothing (the module has hookimpls)."""

    name: str
    module: str
    auth_type: str | None = None


BUILTIN_PLUGIN_TABLE = (
    BuiltinPlugin("none", "flowker.auth.builtin", "NoneAuth"),
    BuiltinPlugin("api_key", "flowker.auth.builtin", "ApiKeyAuth"),
    BuiltinPlugin("bearer", "flowker.auth.builtin", "BearerAuth"),
    BuiltinPlugin("basic", "flowker.auth.builtin", "BasicAuth"),
    BuiltinPlugin("oidc_client_credentials", "flowker.auth.oidc", "OIDCClientCredentialsAuth"),
    BuiltinPlugin("oidc_user", "flowker.auth.oidc", "OIDCUserAuth"),
    BuiltinPlugin("flowker.actions", "flowker.actions"),
)
# Plugin names of the built-ins.
BUILTIN_PLUGINS = tuple(plugin.name for plugin in BUILTIN_PLUGIN_TABLE)


class AuthTypePlugin:
    """A plugin that registers one auth type (each built-in type is one)."""

    def __init__(self, auth_type_class: type):
        self.auth_type_class = auth_type_class

    @hookspecs.hookimpl
    def flowker_register_auth_types(self, registry: Registry) -> None:
        registry.register_auth_type(self.auth_type_class())

    def __repr__(self) -> str:
        return f"<AuthTypePlugin {self.auth_type_class.__name__}>"


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
) -> tuple[pluggy.PluginManager, LoadedPlugins]:
    """A plugin manager with every enabled plugin registered, and what was loaded.

    ``entry_points`` defaults to the installed ``flowker`` group. Each plugin is registered
    as an :class:`AttributedPlugin`, so the registry knows which distribution registered
    which type when the hooks run.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    disabled = tuple(name.strip() for name in disabled if name and name.strip())
    disabled_keys = {_normalized(name) for name in disabled}
    for name in disabled:
        manager.set_blocked(name)
    builtin_names = {plugin.name for plugin in BUILTIN_PLUGIN_TABLE}

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
        if entry_point.name in builtin_names:
            raise PluginError(
                f"plugin name {entry_point.name!r} is used by both {BUILTIN_DISTRIBUTION} and "
                f"{distribution}: a plugin's entry-point name must not be a built-in's"
            )
        if entry_point.name in loaded.origins:
            other = loaded.origins[entry_point.name][0]
            if other == distribution:
                continue  # the same distribution seen twice on sys.path
            raise PluginError(f"plugin name {entry_point.name!r} is used by both {other} and {distribution}")
        try:
            plugin = entry_point.load()
            manager.register(AttributedPlugin(plugin, entry_point.name, distribution, manager), name=entry_point.name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            message = (
                f"plugin {entry_point.name!r} from {distribution} {version} failed to load: {type(exc).__name__}: {exc}"
            )
            logger.error("%s", message)
            loaded.errors.append((distribution, message))
            continue
        loaded.origins[entry_point.name] = (distribution, version)

    disabled_modules: set[str] = set()
    for builtin in BUILTIN_PLUGIN_TABLE:
        if manager.is_blocked(builtin.name):
            loaded.disabled.append((builtin.name, BUILTIN_DISTRIBUTION))
            continue
        if builtin.module in disabled:
            if builtin.module not in disabled_modules:
                disabled_modules.add(builtin.module)
                loaded.disabled.append((builtin.module, BUILTIN_DISTRIBUTION))
            continue
        module = importlib.import_module(builtin.module)
        plugin = AuthTypePlugin(getattr(module, builtin.auth_type)) if builtin.auth_type else module
        manager.register(AttributedPlugin(plugin, builtin.name, BUILTIN_DISTRIBUTION, manager), name=builtin.name)
        loaded.origins[builtin.name] = (BUILTIN_DISTRIBUTION, __version__)

    manager.check_pending()
    return manager, loaded


class AttributedPlugin:
    """A plugin as the manager holds it: its hook implementations, each run with the
    registry told which plugin and distribution is registering (so a clash names both).

    A plugin whose implementation raises (other than a clash, which stops the load) is
    reported in ``registry.load_errors``, loses every type it registered, and is not
    called again; the other plugins go on. Wrappers (``hookwrapper``/``wrapper``) run
    around the whole hook call and are passed through as they are.
    """

    def __init__(self, plugin: Any, plugin_name: str, distribution: str, manager: pluggy.PluginManager):
        self.plugin = plugin
        self.plugin_name = plugin_name
        self.distribution = distribution
        for attribute in dir(plugin):
            options = manager.parse_hookimpl_opts(plugin, attribute)
            if options is None:
                continue
            function = getattr(plugin, attribute)
            if not (options.get("hookwrapper") or options.get("wrapper")):
                function = self._attributed(function, options.get("specname") or attribute)
            setattr(self, attribute, function)

    def _attributed(self, function: Callable, hook_name: str) -> Callable:
        parameters = list(inspect.signature(function).parameters)
        if "registry" not in parameters:
            return function
        position = parameters.index("registry")
        plugin_name, distribution = self.plugin_name, self.distribution

        @functools.wraps(function)  # keeps the hookimpl marker and the argument names pluggy reads
        def call(*args):
            registry = args[position]
            if plugin_name in registry.failed_plugins:
                return None
            with registry.registering(plugin_name, distribution):
                try:
                    return function(*args)
                except PluginError as exc:
                    if not isinstance(exc, TypeNameError):
                        raise  # a clash: which type wins is not for Flowker to guess
                    message = exc.message
                except Exception as exc:  # noqa: BLE001 - a plugin whose hook breaks is reported, not fatal
                    message = (
                        f"plugin {plugin_name!r} from {distribution} failed in {hook_name}: {type(exc).__name__}: {exc}"
                    )
            logger.error("%s", message)
            registry.load_errors.append((distribution, message))
            registry.drop_plugin(plugin_name)  # nothing half-registered
            return None

        return call

    def __repr__(self) -> str:
        return f"<plugin {self.plugin_name!r} from {self.distribution}>"


def _distribution_of(entry_point) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return (f"<entry point {entry_point.value}>", "?")
    return (dist.metadata["Name"] or dist.name, dist.version)


def collect_registry(manager: pluggy.PluginManager, loaded: LoadedPlugins) -> Registry:
    """Call the registration hooks through ``manager.hook`` and return the filled Registry."""
    registry = Registry()
    registry.load_errors.extend(loaded.errors)
    registry.disabled_plugins.extend(loaded.disabled)
    manager.hook.flowker_register_auth_types(registry=registry)
    manager.hook.flowker_register_action_types(registry=registry)
    registry.current_distribution = BUILTIN_DISTRIBUTION
    for plugin_name, (distribution, version) in loaded.origins.items():
        if plugin_name in registry.failed_plugins:
            continue
        registry.plugins.append(
            PluginInfo(
                name=plugin_name,
                distribution=distribution,
                version=version,
                auth_types=registry.provided_by(plugin_name, "auth"),
                action_types=registry.provided_by(plugin_name, "action"),
            )
        )
    return registry


def load_registry(settings=None, entry_points=None) -> Registry:
    """Load the plugins (``settings.disabled_plugins`` left out) and collect their auth and
    action types into a Registry."""
    disabled = getattr(settings, "disabled_plugins", ()) if settings is not None else ()
    return collect_registry(*create_plugin_manager(disabled, entry_points))
