"""Keyset pagination with opaque cursors: ``{"items": [...], "nextCursor": "...", "hasMore": bool}``.

A cursor is URL-safe base64 of a small JSON object: the sort key and order it was made
for, and the sort value and id of the last row returned. Clients treat it as opaque;
the server checks its shape and refuses a cursor reused with another sort (400).
Rows are fetched ``limit + 1`` at a time, ties broken on the id in the sort direction.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import peewee

from flowker.api.errors import bad_query
from flowker.error_codes import ErrorCode

MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 2048


def parse_limit(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    # Plain ASCII digits only: int() would also take " 5", "1_0", "+5" and other scripts' digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
        raise bad_query("limit must be an integer from 1 to 100", ErrorCode.INVALID_LIMIT)
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise bad_query("limit must be an integer from 1 to 100", ErrorCode.INVALID_LIMIT)
    return value


def parse_sort_order(raw: str | None, default: str = "DESC") -> str:
    if raw is None:
        return default
    if raw not in ("ASC", "DESC", "asc", "desc"):
        raise bad_query("sortOrder must be ASC or DESC", ErrorCode.INVALID_SORT_ORDER)
    return raw.upper()


def parse_choice(name: str, raw: str | None, choices, default=None):
    if raw is None:
        return default
    if raw not in choices:
        raise bad_query(f"{name} must be one of {', '.join(choices)}")
    return raw


def encode_cursor(payload: dict) -> str:
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> dict:
    invalid = bad_query("cursor is not valid: use the nextCursor of a previous page", ErrorCode.INVALID_CURSOR)
    if not text or len(text) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), (str, int)) or "v" not in payload:
        raise invalid
    if not isinstance(payload.get("s"), str) or payload.get("o") not in ("ASC", "DESC"):
        raise invalid
    return payload


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str
    has_more: bool

    def body(self, to_item: Callable[[Any], dict]) -> dict:
        return {"items": [to_item(row) for row in self.rows], "nextCursor": self.next_cursor, "hasMore": self.has_more}


_INTEGER_FIELDS = (peewee.IntegerField, peewee.BigIntegerField, peewee.AutoField)
_MAX_CURSOR_STRING = 512


def _decode_scalar(column: peewee.Field, value):
    """A cursor value as the column's type, within what the database can compare: a
    string against a text column, a 64-bit integer against an integer one (an oversized
    integer or another type made SQLite overflow and PostgreSQL fail the query: a 500)."""
    if isinstance(column, _INTEGER_FIELDS):
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
            raise ValueError("not a 64-bit integer")
        return value
    if not isinstance(value, str) or len(value) > _MAX_CURSOR_STRING:
        raise ValueError("not a string")
    return value


@dataclass(frozen=True)
class Sort:
    """What a list is sorted by: the public name, its column, the id column for ties."""

    name: str
    column: peewee.Field
    id_column: peewee.Field
    order: str  # ASC | DESC

    def _encode_value(self, value):
        if isinstance(value, _dt.datetime):
            return value.isoformat()
        return value

    def _decode_value(self, value):
        if isinstance(self.column, peewee.DateTimeField):
            if not isinstance(value, str):
                raise ValueError("not a time")
            return _dt.datetime.fromisoformat(value)
        return _decode_scalar(self.column, value)

    def cursor_for(self, row) -> str:
        value = getattr(row, self.column.name)
        return encode_cursor(
            {"s": self.name, "o": self.order, "v": self._encode_value(value), "id": getattr(row, self.id_column.name)}
        )

    def apply(self, query: peewee.ModelSelect[Any], cursor: dict | None) -> peewee.ModelSelect[Any]:
        ascending = self.order == "ASC"
        if cursor is not None:
            try:
                value = self._decode_value(cursor["v"])
            except ValueError:
                raise bad_query(
                    "cursor is not valid: use the nextCursor of a previous page", ErrorCode.INVALID_CURSOR
                ) from None
            try:
                last_id = _decode_scalar(self.id_column, cursor["id"])
            except ValueError:
                raise bad_query(
                    "cursor is not valid: use the nextCursor of a previous page", ErrorCode.INVALID_CURSOR
                ) from None
            if self.column is self.id_column:
                query = query.where(self.id_column > last_id if ascending else self.id_column < last_id)
            elif ascending:
                query = query.where((self.column > value) | ((self.column == value) & (self.id_column > last_id)))
            else:
                query = query.where((self.column < value) | ((self.column == value) & (self.id_column < last_id)))
        if self.column is self.id_column:
            order: tuple = (self.id_column.asc() if ascending else self.id_column.desc(),)
        else:
            order = (
                (self.column.asc(), self.id_column.asc()) if ascending else (self.column.desc(), self.id_column.desc())
            )
        return query.order_by(*order)


def resolve_sort(
    cursor_text: str | None,
    sort_by: str | None,
    sort_order: str | None,
    columns: Mapping[str, peewee.Field],
    id_column: peewee.Field,
    default_sort: str,
    default_order: str = "DESC",
) -> tuple[Sort, dict | None]:
    """The sort to use and the decoded cursor; a cursor keeps the sort it was made for."""
    if sort_by is not None and sort_by not in columns:
        raise bad_query(f"sortBy must be one of {', '.join(columns)}")
    order = parse_sort_order(sort_order, default_order)
    cursor = None
    if cursor_text not in (None, ""):
        cursor = decode_cursor(cursor_text)
        if cursor["s"] not in columns:
            raise bad_query("cursor is not valid for this list", ErrorCode.INVALID_CURSOR)
        if (sort_by is not None and sort_by != cursor["s"]) or (sort_order is not None and order != cursor["o"]):
            raise bad_query(
                "a cursor keeps the sort it was made with: drop sortBy/sortOrder or the cursor", ErrorCode.INVALID_QUERY
            )
        return Sort(cursor["s"], columns[cursor["s"]], id_column, cursor["o"]), cursor
    name = sort_by or default_sort
    return Sort(name, columns[name], id_column, order), None


def fetch_page(query: peewee.ModelSelect[Any], sort: Sort, cursor: dict | None, limit: int) -> Page:
    rows = list(sort.apply(query, cursor).limit(limit + 1))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows=rows, next_cursor=sort.cursor_for(rows[-1]) if has_more and rows else "", has_more=has_more)
