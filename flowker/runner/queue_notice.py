"""The notice that tells idle queue workers a run was queued (PostgreSQL ``NOTIFY``).

Sent inside the transaction that queues the run, so it is delivered at commit and never
for a run that was rolled back. The payload names the schema, so workers of another schema
on the same database (tests, tenants) can ignore it. SQLite has no such notice: its
workers back off and the process that queued the run wakes its own (flowker.queue).
"""

from __future__ import annotations

from flowker.storage.database import is_postgres

# The PostgreSQL channel idle workers LISTEN on (flowker.queue.notify).
QUEUE_CHANNEL = "flowker_queue"


def notify_queue_workers(database) -> None:
    """NOTIFY the queue's channel within the caller's transaction (no-op on SQLite)."""
    if is_postgres(database):
        database.execute_sql("SELECT pg_notify(%s, current_schema())", (QUEUE_CHANNEL,))
