"""Helpers for the audit tests: fresh databases, tampering with the protections off."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import rfc8785

from flowker.audit import checkpoints as cp
from flowker.audit import store
from flowker.storage.database import close_database, is_postgres, open_database
from flowker.storage.migrations import create_append_only_triggers, upgrade

ENTRY = store.ENTRY_TABLE
CHECKPOINT = store.CHECKPOINT_TABLE


def migrated(url: str):
    """A migrated peewee database for ``url`` (not bound to the models' proxy)."""
    database = open_database(url)
    upgrade(database)
    return database


def close(database) -> None:
    close_database(database)


def p(database) -> str:
    return store.param(database)


@contextlib.contextmanager
def unprotected(database):
    """What an attacker with database access does: switch off the append-only triggers."""
    with database.connection_context():
        if is_postgres(database):
            for table in (ENTRY, CHECKPOINT):
                database.execute_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for table in (ENTRY, CHECKPOINT):
                for operation in ("update", "delete"):
                    database.execute_sql(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
        try:
            yield database
        finally:
            if is_postgres(database):
                for table in (ENTRY, CHECKPOINT):
                    database.execute_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            else:
                create_append_only_triggers(database)


def rows(database, columns="sequence, event_id, hash, previous_hash, canonical") -> list[tuple]:
    with database.connection_context():
        return list(database.execute_sql(f"SELECT {columns} FROM {ENTRY} ORDER BY sequence").fetchall())


def set_column(database, sequence: int, column: str, value) -> None:
    with unprotected(database):
        database.execute_sql(
            f"UPDATE {ENTRY} SET {column} = {p(database)} WHERE sequence = {p(database)}", (value, sequence)
        )


def delete_entries(database, sequences) -> None:
    with unprotected(database):
        for sequence in sequences:
            database.execute_sql(f"DELETE FROM {ENTRY} WHERE sequence = {p(database)}", (sequence,))


def delete_checkpoints(database) -> None:
    with unprotected(database):
        database.execute_sql(f"DELETE FROM {CHECKPOINT}")


def rewrite_from(database, first_sequence: int, marker: int, forge_key=None) -> None:
    """Rewrite every entry from ``first_sequence`` on with a consistent chain (new content,
    recomputed hashes and links), as someone without the signing key can. With
    ``forge_key``, checkpoints from there on are replaced by ones signed with that key."""
    ph = p(database)
    with unprotected(database):
        entries = list(
            database.execute_sql(
                f"SELECT sequence, canonical, previous_hash FROM {ENTRY} WHERE sequence >= {ph} ORDER BY sequence",
                (first_sequence,),
            ).fetchall()
        )
        if not entries:
            return
        previous = entries[0][2]
        new_hashes = {}
        for sequence, canonical, _old_previous in entries:
            document = json.loads(canonical)
            document["payload"]["metadata"] = {"rewritten": marker}
            text = rfc8785.dumps(document).decode("utf-8")
            digest = hashlib.sha256((previous + text).encode("utf-8")).hexdigest()
            database.execute_sql(
                f"UPDATE {ENTRY} SET canonical = {ph}, previous_hash = {ph}, hash = {ph} WHERE sequence = {ph}",
                (text, previous, digest, sequence),
            )
            new_hashes[sequence] = previous = digest
        if forge_key is not None:
            # Re-signed as a linked checkpoint chain, as an attacker with their own key can.
            kept = database.execute_sql(
                f"SELECT statement FROM {CHECKPOINT} WHERE sequence < {ph} ORDER BY sequence DESC LIMIT 1",
                (first_sequence,),
            ).fetchone()
            previous_checkpoint = cp.checkpoint_hash(kept[0]) if kept else cp.GENESIS_CHECKPOINT_HASH
            forged = list(
                database.execute_sql(
                    f"SELECT sequence, created_at FROM {CHECKPOINT} WHERE sequence >= {ph} ORDER BY sequence",
                    (first_sequence,),
                ).fetchall()
            )
            for sequence, created_at in forged:
                if sequence not in new_hashes:
                    continue
                checkpoint = cp.sign(
                    forge_key,
                    sequence=sequence,
                    head_hash=new_hashes[sequence],
                    interval=1000,
                    created_at=created_at,
                    previous_checkpoint_hash=previous_checkpoint,
                )
                previous_checkpoint = checkpoint.hash
                database.execute_sql(f"DELETE FROM {CHECKPOINT} WHERE sequence = {ph}", (sequence,))
                store.insert_checkpoint(database, checkpoint.to_row())


def read_acks(path: str) -> tuple[list[tuple[int, str]], bool]:
    """(acknowledged (sequence, event id) pairs, whether the writer died mid-append)."""
    acked, mid_append = [], False
    if not os.path.exists(path):
        return acked, mid_append
    with open(path, "r", encoding="ascii") as handle:
        lines = [line for line in handle.read().split("\n") if line]
    for line in lines:
        parts = line.split()
        if parts[0] == "A" and len(parts) == 3:
            acked.append((int(parts[1]), parts[2]))
    if lines:
        mid_append = lines[-1].startswith("B ")
    return acked, mid_append


def delete_checkpoints_from(database, first_sequence: int) -> None:
    """Delete the checkpoint rows at ``first_sequence`` and after (what an insider who cut
    the chain there does to hide the cut)."""
    with unprotected(database):
        database.execute_sql(f"DELETE FROM {CHECKPOINT} WHERE sequence >= {p(database)}", (first_sequence,))


def delete_checkpoint_at(database, sequence: int) -> None:
    with unprotected(database):
        database.execute_sql(f"DELETE FROM {CHECKPOINT} WHERE sequence = {p(database)}", (sequence,))


def truncate(database, keep: int) -> None:
    """Delete every entry after ``keep`` and every checkpoint past it."""
    with unprotected(database):
        database.execute_sql(f"DELETE FROM {ENTRY} WHERE sequence > {p(database)}", (keep,))
        database.execute_sql(f"DELETE FROM {CHECKPOINT} WHERE sequence > {p(database)}", (keep,))
