"""``/v1/catalog``: the auth and action types the plugin registry holds, with their
config JSON Schemas and the distribution that provides each.

The lists page like every other list (``limit``, ``cursor``), sorted by name; the cursor
is the usual opaque one, holding the last name returned.
"""

from __future__ import annotations

from flowker.api.errors import bad_query
from flowker.api.pagination import decode_cursor, encode_cursor, parse_limit
from flowker.errors import NotFound
from flowker.error_codes import ErrorCode

DEFAULT_LIMIT = 100
_SORT = "name"


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


def _list(req, registry, kind: str, table) -> dict:
    limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
    names = sorted(table)
    cursor_text = req.get_param("cursor")
    if cursor_text not in (None, ""):
        cursor = decode_cursor(cursor_text)
        if cursor["s"] != _SORT or cursor["o"] != "ASC" or not isinstance(cursor["v"], str):
            raise bad_query("cursor is not valid for this list", ErrorCode.INVALID_CURSOR)
        names = [name for name in names if name > cursor["v"]]
    page, has_more = names[:limit], len(names) > limit
    next_cursor = encode_cursor({"s": _SORT, "o": "ASC", "v": page[-1], "id": page[-1]}) if has_more else ""
    return {
        "items": [_type_view(registry, kind, table[name]) for name in page],
        "nextCursor": next_cursor,
        "hasMore": has_more,
    }


class _Catalog:
    uses_database = False

    def __init__(self, state):
        self.registry = state.registry


class AuthTypes(_Catalog):
    def on_get(self, req, resp) -> None:
        resp.media = _list(req, self.registry, "auth", self.registry.auth_types)


class AuthType(_Catalog):
    def on_get(self, req, resp, type_name: str) -> None:
        item = self.registry.auth_types.get(type_name)
        if item is None:
            shown = type_name if len(type_name) <= 100 else type_name[:100] + "..."
            raise NotFound(f"auth type {shown!r} is not registered", code=ErrorCode.AUTH_TYPE_NOT_FOUND)
        resp.media = _type_view(self.registry, "auth", item)


class ActionTypes(_Catalog):
    def on_get(self, req, resp) -> None:
        resp.media = _list(req, self.registry, "action", self.registry.action_types)
