"""The registry of auth and action types that plugins fill in.

It records which distribution provided each type, so a clash can name both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from flowker.errors import PluginError

if TYPE_CHECKING:
    from flowker.actions import ActionType
    from flowker.auth.base import AuthType


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
    # Set by the plugin manager while it calls each plugin's hooks.
    current_distribution: str = "flowker"
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

    def unregister(self, kind: str, name: str) -> None:
        """Remove a type again (used when a plugin's hook fails halfway)."""
        table = self._auth_types if kind == "auth" else self._action_types
        table.pop(name, None)
        self._providers.pop((kind, name), None)

    def _register(self, kind: str, table: dict, item) -> None:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.current_distribution} registered an {kind} type without a name")
        if name in table:
            raise PluginError(
                f"{kind} type {name!r} is registered twice: by {self._providers[(kind, name)]} "
                f"and by {self.current_distribution}"
            )
        table[name] = item
        self._providers[(kind, name)] = self.current_distribution

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
