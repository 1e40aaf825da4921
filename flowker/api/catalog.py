"""``/v1/catalog``: the auth and action types the plugin registry holds, with their
config JSON Schemas and the distribution that provides each."""

from __future__ import annotations

from flowker.errors import NotFound
from flowker.error_codes import ErrorCode



def _type_view(registry, kind: str, item) -> dict:
    try:
        provider = registry.provider_of(kind, item.name)
    except KeyError:
        provider = None
    return {
        "name": item.name,
        "description": item.description,
        "configSchema": item.config_schema,
        "provider": provider,
    }


def _list(registry, kind: str, table) -> dict:
    items = [_type_view(registry, kind, table[name]) for name in sorted(table)]
    return {"items": items, "nextCursor": "", "hasMore": False}


class _Catalog:
    uses_database = False

    def __init__(self, state):
        self.registry = state.registry


class AuthTypes(_Catalog):
    def on_get(self, req, resp) -> None:
        resp.media = _list(self.registry, "auth", self.registry.auth_types)


class AuthType(_Catalog):
    def on_get(self, req, resp, type_name: str) -> None:
        item = self.registry.auth_types.get(type_name)
        if item is None:
            shown = type_name if len(type_name) <= 100 else type_name[:100] + "..."
            raise NotFound(f"auth type {shown!r} is not registered", code=ErrorCode.AUTH_TYPE_NOT_FOUND)
        resp.media = _type_view(self.registry, "auth", item)


class ActionTypes(_Catalog):
    def on_get(self, req, resp) -> None:
        resp.media = _list(self.registry, "action", self.registry.action_types)
