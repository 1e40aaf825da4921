"""Statements compiled once for the hottest writes and reads (an execution's rows).

peewee builds SQL text anew on every query: for the dozen statements of each execution
that was a third of a worker's CPU. These are parameterised SQL prepared once per
backend; values still go through the models' fields (``db_value``/``python_value``), so
what is stored is exactly what the peewee models would store and read.
"""

from __future__ import annotations

from typing import Any, TypeVar

import peewee

M = TypeVar("M", bound=peewee.Model)


def model_database(model: type[peewee.Model]) -> peewee.Database:
    """The real database a model is bound to now (through the proxy, or a ``bind_ctx``)."""
    database = model._meta.database
    return database.obj if isinstance(database, peewee.DatabaseProxy) else database


def _quote(name: str) -> str:
    return f'"{name}"'


def _placeholder(database: peewee.Database) -> str:
    return database.param  # "?" on SQLite, "%s" on PostgreSQL


class CompiledInsert:
    """``INSERT INTO table (columns) VALUES (...), (...)`` for rows of values in ``fields`` order."""

    def __init__(self, model: type[peewee.Model], fields: tuple[str, ...]):
        meta = model._meta
        self.fields = fields
        self.converters = tuple(meta.fields[name].db_value for name in fields)
        self._head = (
            f"INSERT INTO {_quote(meta.table_name)} "
            f"({', '.join(_quote(meta.fields[name].column_name) for name in fields)}) VALUES "
        )
        self._sql: dict[tuple[str, int], str] = {}

    def sql(self, database: peewee.Database, rows: int) -> str:
        p = _placeholder(database)
        key = (p, rows)
        text = self._sql.get(key)
        if text is None:
            row = f"({', '.join([p] * len(self.fields))})"
            text = self._sql[key] = self._head + ", ".join([row] * rows)
        return text

    def execute(self, database: peewee.Database, rows: list[tuple]) -> None:
        if not rows:
            return
        converters = self.converters
        values = [convert(value) for row in rows for convert, value in zip(converters, row)]
        database.execute_sql(self.sql(database, len(rows)), values)


class CompiledUpdate:
    """``UPDATE table SET a = ?, b = ? WHERE <where>``; ``where`` uses ``{p}`` for parameters.

    ``execute`` takes the SET values (converted by their fields) then the WHERE values
    (passed as they are) and answers the number of rows changed.
    """

    def __init__(self, model: type[peewee.Model], fields: tuple[str, ...], where: str):
        meta = model._meta
        self.converters = tuple(meta.fields[name].db_value for name in fields)
        self._set = ", ".join(f"{_quote(meta.fields[name].column_name)} = {{p}}" for name in fields)
        self._template = f"UPDATE {_quote(meta.table_name)} SET {self._set} WHERE {where}"
        self._sql: dict[str, str] = {}

    def execute(self, database: peewee.Database, values: tuple, where_values: tuple) -> int:
        p = _placeholder(database)
        text = self._sql.get(p)
        if text is None:
            text = self._sql[p] = self._template.replace("{p}", p)
        converted = [convert(value) for convert, value in zip(self.converters, values)]
        cursor = database.execute_sql(text, [*converted, *where_values])
        return cursor.rowcount


class CompiledSelect:
    """``SELECT <all columns> FROM table WHERE <where>`` giving model instances."""

    def __init__(self, model: type[peewee.Model], where: str):
        meta = model._meta
        self.model = model
        self.names = tuple(meta.sorted_field_names)
        fields = [meta.fields[name] for name in self.names]
        self.converters = tuple(field.python_value for field in fields)
        columns = ", ".join(_quote(field.column_name) for field in fields)
        self._template = f"SELECT {columns} FROM {_quote(meta.table_name)} WHERE {where}"
        self._sql: dict[str, str] = {}

    def first(self, database: peewee.Database, where_values: tuple):
        p = _placeholder(database)
        text = self._sql.get(p)
        if text is None:
            text = self._sql[p] = self._template.replace("{p}", p)
        row = database.execute_sql(text, list(where_values)).fetchone()
        if row is None:
            return None
        return model_from_values(
            self.model, self.names, (convert(value) for convert, value in zip(self.converters, row))
        )


def model_from_values(model: type[M], names, values) -> M:
    """An instance holding ``values`` (python values, in ``names`` order) as if read from its
    row: no defaults computed, nothing marked dirty."""
    instance = model(__no_default__=1)
    instance.__data__.update(zip(names, values))
    instance._dirty.clear()  # type: ignore[attr-defined]  # peewee's stubs omit this private set
    return instance


def row_backed_model(model: type[M], row: dict) -> M:
    """An instance whose field values are ``row`` itself (no copy): filling ``row`` later fills
    the instance (the audit chain prepares entries before their place in the chain is known)."""
    instance = model(__no_default__=1)
    instance.__data__ = row
    return instance


def model_row(instance: peewee.Model) -> dict[str, Any]:
    """The field values of an instance, by field name (the dict itself, not a copy)."""
    return instance.__data__
