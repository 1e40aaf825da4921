"""Verifying the chain stored in the database.

For every entry up to the target, in sequence order: the sequence numbers run 1, 2, 3...
without a gap; ``previous_hash`` equals the hash of the entry before (the genesis value for
the first); ``hash`` equals ``sha256(previous_hash || canonical)``; and every indexed column
(event type, action, result, resource, actor, timestamp, sequence, event id) equals the
value inside the hashed document. Then the checkpoints: each statement agrees with its
columns and (given public keys) carries a valid signature; each signed head hash equals
the entry hash at its sequence; none points past the end of the chain (tail truncation);
and, with public keys, the head is less than the last checkpoint's promised interval past
it (truncation or rewrite with the checkpoints deleted too).

Speed: rows stream in keyset pages; the per-row Python work is one sha256 and a few
comparisons. The column check runs inside the database (a prefix comparison, see
:func:`flowker.audit.store.column_mismatch_candidates`) on a second connection in a
thread, concurrently with the hash walk; only rows it cannot vouch for are parsed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import peewee

from flowker.audit import checkpoints as cp
from flowker.audit import store
from flowker.audit.canonical import GENESIS_HASH, document_columns
from flowker.errors import NotFound
from flowker.storage.database import connection
from flowker.error_codes import ErrorCode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Progress = Callable[[int, int], None]

# Below this many entries the column check runs in the calling thread.
CONCURRENT_COLUMN_CHECK_FROM = 20_000


@dataclass
class VerifyResult:
    is_valid: bool
    total_checked: int
    message: str
    first_invalid_id: str | None = None
    first_invalid_sequence: int | None = None
    checkpoints_checked: int = 0
    signatures_checked: bool = False
    head_sequence: int = 0

    def to_dict(self) -> dict:
        """The REST shape: ``{isValid, totalChecked, firstInvalidId?, message}``."""
        body: dict = {"isValid": self.is_valid, "totalChecked": self.total_checked}
        if self.first_invalid_id is not None:
            body["firstInvalidId"] = self.first_invalid_id
        body["message"] = self.message
        return body


def columns_match(row: tuple) -> bool:
    """Exact check: a full entry row (store.ENTRY_COLUMNS order) against its document."""
    try:
        document = json.loads(row[11])
        expected = document_columns(document)
    except (ValueError, KeyError, TypeError):
        return False
    return type(expected[0]) is int and expected == tuple(row[:11])


def _first_column_mismatch(database: peewee.Database, up_to: int) -> int | None:
    with connection(database):
        for sequence in store.column_mismatch_candidates(database, up_to):
            row = store.entry_row(database, sequence)
            if row is None or not columns_match(row):
                return sequence
    return None


class _ColumnCheck:
    """The column check, in a thread of its own for long chains."""

    def __init__(self, database: peewee.Database, up_to: int):
        self.result: int | None = None
        self.error: BaseException | None = None
        self._database, self._up_to = database, up_to
        self._thread = None
        # An in-memory SQLite database is private to its connection: no second one.
        in_memory = "memory" in str(getattr(database, "database", ""))
        if up_to >= CONCURRENT_COLUMN_CHECK_FROM and not in_memory:
            self._thread = threading.Thread(target=self._run, name="audit-column-check", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.result = _first_column_mismatch(self._database, self._up_to)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self.error = exc

    def first_mismatch(self) -> int | None:
        if self._thread is None:
            return _first_column_mismatch(self._database, self._up_to)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result


def _walk_links(database, up_to: int, signed_heads: Mapping[int, str], progress: Progress | None):
    """(entries checked, first bad sequence or None, message)."""
    sha256 = hashlib.sha256
    expected, last = 1, GENESIS_HASH
    for page in store.stream_links(database, up_to):
        for sequence, canonical, previous, digest in page:
            if sequence != expected:
                if sequence > expected:
                    missing = f"entry {expected} is missing" if sequence == expected + 1 else \
                        f"entries {expected}..{sequence - 1} are missing"
                    return expected, sequence, f"entry {sequence} follows entry {expected - 1}: {missing}"
                return expected, sequence, f"entry {sequence} is out of order (expected {expected})"
            if previous != last:
                return expected, sequence, f"entry {sequence}: its previous hash is not the hash of entry {sequence - 1}"
            if sha256((previous + canonical).encode("utf-8")).hexdigest() != digest:
                return expected, sequence, f"entry {sequence}: its hash does not match its content"
            if sequence in signed_heads and signed_heads[sequence] != digest:
                return expected, sequence, (
                    f"entry {sequence}: its hash differs from the head hash signed by the checkpoint at "
                    f"sequence {sequence} (the chain was rewritten)"
                )
            last = digest
            expected += 1
        if progress is not None:
            progress(expected - 1, up_to)
    return expected - 1, None, None


def resolve_target(database: peewee.Database, up_to) -> int:
    """The sequence to verify up to: an event id (str) or a sequence number (int)."""
    if isinstance(up_to, bool):
        raise TypeError("up_to must be an event id or a sequence number")
    if isinstance(up_to, int):
        sequence = up_to if store.event_id_at(database, up_to) is not None else None
    else:
        sequence = store.sequence_of_event(database, str(up_to))
    if sequence is None:
        raise NotFound("audit event not found", code=ErrorCode.AUDIT_EVENT_NOT_FOUND)
    return sequence


def verify_database(
    database: peewee.Database | peewee.DatabaseProxy | None = None,
    *,
    up_to=None,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    checkpoint_interval: int | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify the chain (up to an event id or sequence, or all of it).

    ``public_keys`` (key id -> Ed25519 public key, see :func:`checkpoints.keys_by_id`)
    turns on signature checks and the freshness rule; ``checkpoint_interval`` is the
    configured interval, used for that rule when no checkpoint exists yet.
    """
    database = store.resolve(database)
    with connection(database):
        # Checkpoints first, then the head, then checkpoints again: a checkpoint is
        # committed with the entry it signs, so one read before the head can only point
        # past the head if entries were removed, and the second read sees every
        # checkpoint up to the head.
        earlier = [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(database)]
        full = up_to is None
        target = store.max_sequence(database) if full else resolve_target(database, up_to)
        current = [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(database)]

        problems: list[tuple[int, str]] = []  # (sequence, message)
        signed_heads: dict[int, str] = {}
        last_signed, last_interval = 0, None
        for checkpoint in current:
            if checkpoint.sequence > target:
                continue
            problem, interval = cp.check(checkpoint, public_keys)
            if problem:
                problems.append((checkpoint.sequence, problem))
                continue
            signed_heads[checkpoint.sequence] = checkpoint.head_hash
            last_signed, last_interval = checkpoint.sequence, interval
        if full:
            beyond = [c.sequence for c in earlier if c.sequence > target]
            if beyond:
                problems.append((target + 1, (
                    f"a checkpoint signs sequence {max(beyond)} but the chain ends at {target}: "
                    "entries were removed from the end"
                )))

        column_check = _ColumnCheck(database, target)
        checked, bad_sequence, message = _walk_links(database, target, signed_heads, progress)
        if bad_sequence is not None:
            problems.append((bad_sequence, message))
        column_bad = column_check.first_mismatch()
        if column_bad is not None:
            problems.append((column_bad, f"entry {column_bad}: its indexed columns differ from its hashed content"))

        if full and public_keys is not None and not problems:
            interval = (last_interval or 0) if last_signed else (checkpoint_interval or 0)
            if interval and target - last_signed >= interval:
                since = f"the last signed checkpoint at sequence {last_signed}" if last_signed else "the start"
                problems.append((target + 1, (
                    f"the chain ends {target - last_signed} entries after {since}, but a checkpoint is "
                    f"signed every {interval} entries: checkpoints were removed (or entries were "
                    "appended by a process without the signing key)"
                )))

        signatures = public_keys is not None
        if problems:
            sequence, message = min(problems, key=lambda p: p[0])
            event_id = store.event_id_at(database, sequence) if sequence <= target else None
            total = min(checked, max(sequence, 1)) if sequence <= target else checked
            return VerifyResult(False, total, f"hash chain broken: {message}", event_id, sequence,
                                len(signed_heads), signatures, target)
        if target == 0:
            text = "hash chain is valid: the chain is empty"
        else:
            text = f"hash chain is valid: {checked} {'entry' if checked == 1 else 'entries'} checked"
        if signed_heads:
            text += (f", {len(signed_heads)} signed checkpoints verified (last at sequence {last_signed})"
                     if signatures else
                     f", {len(signed_heads)} checkpoints consistent (signatures not checked: no public key)")
        elif signatures and target:
            text += ", no checkpoint covers it yet"
        return VerifyResult(True, checked, text, None, None, len(signed_heads), signatures, target)
