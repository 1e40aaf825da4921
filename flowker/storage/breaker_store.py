"""The circuit breakers' shared state: one ``circuit_breaker_state`` row per executor.

Reading is one primary-key SELECT. A change runs a transition function on the row inside
a write transaction that holds the row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` excludes every other writer), so concurrent processes apply their
changes one after the other and none is lost. A missing row is a closed breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace

from flowker.storage.database import is_postgres, write_transaction
from flowker.storage.models import CircuitBreakerState
from flowker.storage.statements import model_database

COLUMNS = ("state", "consecutive_failures", "opened_until", "half_open_in_flight", "updated_at")


@dataclass(frozen=True)
class BreakerRow:
    state: str = "closed"  # closed | open
    consecutive_failures: int = 0
    opened_until: float = 0.0  # Unix seconds
    half_open_in_flight: int = 0
    updated_at: float = 0.0  # Unix seconds of the last change

    def changed(self, **values) -> BreakerRow:
        return replace(self, updated_at=time.time(), **values)


CLOSED = BreakerRow()


class BreakerStateStore:
    """The rows, through the database the models are bound to."""

    def __init__(self):
        table = f'"{CircuitBreakerState._meta.table_name}"'
        columns = ", ".join(f'"{name}"' for name in COLUMNS)
        self._select = f'SELECT {columns} FROM {table} WHERE "executor_id" = {{p}}'
        self._insert = (
            f'INSERT INTO {table} ("executor_id", {columns}) VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}}) '
            "ON CONFLICT DO NOTHING"
        )
        self._update = (
            f"UPDATE {table} SET " + ", ".join(f'"{name}" = {{p}}' for name in COLUMNS) + ' WHERE "executor_id" = {p}'
        )

    @staticmethod
    def _sql(database, template: str) -> str:
        return template.replace("{p}", database.param)

    def read(self, executor_id: str) -> BreakerRow:
        database = model_database(CircuitBreakerState)
        row = database.execute_sql(self._sql(database, self._select), (executor_id,)).fetchone()
        return CLOSED if row is None else BreakerRow(*row)

    def change(self, executor_id: str, transition: Callable[[BreakerRow], BreakerRow]) -> BreakerRow:
        """Apply ``transition`` to the row atomically; answers the row as stored afterwards."""
        database = model_database(CircuitBreakerState)
        select = self._sql(database, self._select) + (" FOR UPDATE" if is_postgres(database) else "")
        with write_transaction(database):
            found = database.execute_sql(select, (executor_id,)).fetchone()
            if found is None:
                database.execute_sql(self._sql(database, self._insert), (executor_id, *astuple(CLOSED)))
                found = database.execute_sql(select, (executor_id,)).fetchone()
            current = BreakerRow(*found)
            new = transition(current)
            if new != current:
                values = [getattr(new, name) for name in COLUMNS]
                database.execute_sql(self._sql(database, self._update), (*values, executor_id))
        return new
