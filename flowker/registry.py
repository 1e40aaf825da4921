"""The registry of auth and action types that plugins fill in.

It records which plugin and distribution provided each type, so a clash can name both
and say how to keep one (``FLOWKER_DISABLED_PLUGINS``). A type name must be snake_case
(what the spec schemas accept); any other name is refused when it is registered, naming
the distribution.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterator, Mapping

from flowker.errors import PluginError

if TYPE_CHECKING:
    from flowker.actions import ActionType
    from flowker.auth.base import AuthType


class TypeNameError(PluginError):
    """A plugin registered a type under a name no spec could use: the plugin is reported
    and left out, the others load."""


def _is_type_name(name: str) -> bool:
    from flowker.auth.base import is_type_name

    return is_type_name(name)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its registration name and the distribution that shipped it."""

    name: str
    distribution: str
    version: str
    auth_types: tuple[str, ...] = ()
    action_types: tuple[str, ...] = ()


@dataclass
class Registry:
    """Auth and action types by name. Filled once at start-up, then only read."""

    _auth_types: dict = field(default_factory=dict)
    _action_types: dict = field(default_factory=dict)
    _providers: dict = field(default_factory=dict)  # (kind, name) -> distribution
    _provider_plugins: dict = field(default_factory=dict)  # (kind, name) -> plugin name
    _provided: dict = field(default_factory=dict)  # plugin name -> [(kind, name)] in order
    # Set by the plugin manager while it calls each plugin's hooks.
    current_distribution: str = "flowker"
    current_plugin: str | None = None
    failed_plugins: set = field(default_factory=set)  # plugins whose hook failed: left out
    plugins: list = field(default_factory=list)
    load_errors: list = field(default_factory=list)  # (distribution, message)
    disabled_plugins: list = field(default_factory=list)  # (plugin name, distribution) not loaded

    @property
    def auth_types(self) -> Mapping[str, "AuthType"]:
        return MappingProxyType(self._auth_types)

    @property
    def action_types(self) -> Mapping[str, "ActionType"]:
        return MappingProxyType(self._action_types)

    def provider_of(self, kind: str, name: str) -> str:
        """The distribution that registered an ``auth`` or ``action`` type."""
        return self._providers[(kind, name)]

    def register_auth_type(self, auth_type: "AuthType") -> None:
        self._register("auth", self._auth_types, auth_type)

    def register_action_type(self, action_type: "ActionType") -> None:
        self._register("action", self._action_types, action_type)

    def provided_by(self, plugin_name: str, kind: str) -> tuple[str, ...]:
        """The ``auth`` or ``action`` type names a plugin registered, in order."""
        return tuple(name for item_kind, name in self._provided.get(plugin_name, ()) if item_kind == kind)

    @contextmanager
    def registering(self, plugin_name: str, distribution: str) -> Iterator[None]:
        """While a plugin's hook runs: what it registers is attributed to it."""
        previous = (self.current_plugin, self.current_distribution)
        self.current_plugin, self.current_distribution = plugin_name, distribution
        try:
            yield
        finally:
            self.current_plugin, self.current_distribution = previous

    def drop_plugin(self, plugin_name: str) -> None:
        """Remove every type a plugin registered and call it no more (its hook failed)."""
        self.failed_plugins.add(plugin_name)
        for kind, name in self._provided.pop(plugin_name, ()):
            self.unregister(kind, name)

    def unregister(self, kind: str, name: str) -> None:
        """Remove a type again (used when a plugin's hook fails halfway)."""
        table = self._auth_types if kind == "auth" else self._action_types
        table.pop(name, None)
        self._providers.pop((kind, name), None)
        self._provider_plugins.pop((kind, name), None)

    def _register(self, kind: str, table: dict, item) -> None:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.current_distribution} registered an {kind} type without a name")
        if not _is_type_name(name):
            raise TypeNameError(
                f"{self.current_distribution} registered {kind} type {name[:100]!r}: a type name must be "
                f"snake_case (a lower-case letter, then lower-case letters, digits or underscores; at most "
                f"100 characters), as specs name it; the package must rename it"
            )
        if name in table:
            first = (self._providers[(kind, name)], self._provider_plugins.get((kind, name)))
            second = (self.current_distribution, self.current_plugin)
            plugins = " or ".join(f"{plugin!r} ({distribution})" for distribution, plugin in (first, second) if plugin)
            hint = (
                f"; to keep one, list the other's plugin in FLOWKER_DISABLED_PLUGINS: {plugins}"
                if plugins
                else ("; to keep one, list the other's plugin or package in FLOWKER_DISABLED_PLUGINS")
            )
            raise PluginError(f"{kind} type {name!r} is registered twice: by {first[0]} and by {second[0]}{hint}")
        table[name] = item
        self._providers[(kind, name)] = self.current_distribution
        if self.current_plugin is not None:
            self._provider_plugins[(kind, name)] = self.current_plugin
            self._provided.setdefault(self.current_plugin, []).append((kind, name))

    def auth_type(self, name: str) -> "AuthType":
        from flowker.errors import UnprocessableEntity

        try:
            return self._auth_types[name]
        except KeyError:
            known = ", ".join(sorted(self._auth_types))
            raise UnprocessableEntity(f"unknown auth type {name!r} (known: {known})") from None

    def action_type(self, name: str) -> "ActionType":
        from flowker.errors import UnprocessableEntity

        try:
            return self._action_types[name]
        except KeyError:
            known = ", ".join(sorted(self._action_types))
            raise UnprocessableEntity(f"unknown action type {name!r} (known: {known})") from None
