"""The replay ledger of signed webhooks: each accepted message once, on every server.

:func:`remember_delivery` inserts the message's key; the table's primary key makes a
second insert of the same key - on this process or any other sharing the database - a
no-op that answers False. One statement, ``INSERT ... ON CONFLICT DO NOTHING``, on both
backends (SQLite 3.24+ and PostgreSQL), in its own short write transaction.
:func:`forget_delivery` takes one back (the run did not start, so the sender's retry is
no replay); :func:`prune_expired` deletes rows past their ``expires_at``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

from flowker.storage.database import write_transaction
from flowker.storage.models import WebhookDelivery
from flowker.storage.statements import model_database


def delivery_key(workflow_id: str, scheme: str, message_id: str) -> str:
    """The stored key: one workflow's messages are not confused with another's (a sender
    may deliver one message id to several endpoints)."""
    material = "\n".join((workflow_id, scheme, message_id)).encode("utf-8", "surrogateescape")
    return hashlib.sha256(material).hexdigest()


def remember_delivery(key: str, workflow_id: str, now: _dt.datetime, expires_at: _dt.datetime) -> bool:
    """Record the message; False when it was recorded before (a replay)."""
    database = model_database(WebhookDelivery)
    meta = WebhookDelivery._meta
    columns = ", ".join(f'"{field.column_name}"' for field in meta.sorted_fields)
    marks = ", ".join([database.param] * len(meta.sorted_fields))
    values = {"key": key, "workflow_id": workflow_id, "received_at": now, "expires_at": expires_at}
    params = [field.db_value(values[field.name]) for field in meta.sorted_fields]
    sql = f'INSERT INTO "{meta.table_name}" ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING'
    with write_transaction(database):
        cursor = database.execute_sql(sql, params)
    return cursor.rowcount == 1


def forget_delivery(key: str) -> None:
    database = model_database(WebhookDelivery)
    with write_transaction(database):
        WebhookDelivery.delete().where(WebhookDelivery.key == key).execute()


def prune_expired(now: _dt.datetime) -> int:
    """Delete the rows whose keep-until time has passed; answers how many."""
    database = model_database(WebhookDelivery)
    with write_transaction(database):
        return WebhookDelivery.delete().where(WebhookDelivery.expires_at < now).execute()
