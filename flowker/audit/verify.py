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
import time
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


def _walk_links(database, up_to: int, expected_heads: Mapping[int, tuple[str, str]], progress: Progress | None):
    """(entries checked, first bad sequence or None, message).

    ``expected_heads``: sequence -> (hash the entry there must have, who says so).
    """
    sha256 = hashlib.sha256
    expected, last = 1, GENESIS_HASH
    for page in store.stream_links(database, up_to):
        for sequence, canonical, previous, digest in page:
            if sequence != expected:
                if sequence > expected:
                    missing = (
                        f"entry {expected} is missing"
                        if sequence == expected + 1
                        else f"entries {expected}..{sequence - 1} are missing"
                    )
                    return expected, sequence, f"entry {sequence} follows entry {expected - 1}: {missing}"
                return expected, sequence, f"entry {sequence} is out of order (expected {expected})"
            if previous != last:
                return (
                    expected,
                    sequence,
                    (f"entry {sequence}: its previous hash is not the hash of entry {sequence - 1}"),
                )
            if sha256((previous + canonical).encode("utf-8")).hexdigest() != digest:
                return expected, sequence, f"entry {sequence}: its hash does not match its content"
            if sequence in expected_heads and expected_heads[sequence][0] != digest:
                return (
                    expected,
                    sequence,
                    (
                        f"entry {sequence}: its hash differs from the head hash signed by {expected_heads[sequence][1]} "
                        "(the chain was rewritten)"
                    ),
                )
            last = digest
            expected += 1
        if progress is not None:
            progress(expected - 1, up_to)
        # Let other threads of the process run between batches (a verify of a long chain is
        # seconds of Python work; requests served meanwhile should not wait for it).
        time.sleep(0)
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


def _checkpoint_chain_problems(checkpoints: list[cp.Checkpoint]) -> list[tuple[int, str]]:
    """Each chained (version-2) checkpoint must name the one before it in the database."""
    problems = []
    previous: cp.Checkpoint | None = None
    for checkpoint in checkpoints:
        named = checkpoint.previous_checkpoint_hash
        if named is not None:
            where = f"checkpoint at sequence {checkpoint.sequence}"
            if previous is None and named != cp.GENESIS_CHECKPOINT_HASH:
                problems.append(
                    (
                        checkpoint.sequence,
                        (
                            f"{where} follows a checkpoint the database no longer holds: earlier checkpoints were removed"
                        ),
                    )
                )
            elif previous is not None and named != previous.hash:
                problems.append(
                    (
                        checkpoint.sequence,
                        (
                            f"{where} does not follow the checkpoint at sequence {previous.sequence}: a checkpoint "
                            f"between them was removed or replaced"
                        ),
                    )
                )
        previous = checkpoint
    return problems


def _witness_problems(
    witnessed,
    by_sequence: Mapping[int, cp.Checkpoint],
    target: int,
    head: int,
    at_head: bool,
    expected_heads: dict[int, tuple[str, str]],
) -> list[tuple[int, str]]:
    """What the database lacks of what the witness holds; fills ``expected_heads``."""
    problems = []
    beyond = [w for w in witnessed if w.sequence > head]
    if at_head and beyond:
        last = max(beyond, key=lambda w: w.sequence)
        lost = f"entry {head + 1} was" if last.sequence == head + 1 else f"entries {head + 1}..{last.sequence} were"
        problems.append(
            (
                head + 1,
                (
                    f"the witness holds a checkpoint at sequence {last.sequence} ({last.sequence} entries) but the chain "
                    f"ends at {head}: at least {lost} removed from the end, "
                    f"and {len(beyond)} witnessed checkpoint{'s' if len(beyond) != 1 else ''} with them"
                ),
            )
        )
    for w in witnessed:
        if w.sequence > target:
            continue
        stored = by_sequence.get(w.sequence)
        if stored is None:
            problems.append(
                (
                    w.sequence,
                    (
                        f"the witness holds a checkpoint at sequence {w.sequence} that the database does not: "
                        "the checkpoint was removed"
                    ),
                )
            )
        elif stored.hash != w.checkpoint_hash:
            problems.append(
                (
                    w.sequence,
                    (
                        f"the checkpoint at sequence {w.sequence} differs from the one the witness holds: "
                        "it was replaced"
                    ),
                )
            )
        expected_heads[w.sequence] = (w.head_hash, f"the witnessed checkpoint at sequence {w.sequence}")
    return problems


def _read_ends(database) -> tuple[list[int], int, list[cp.Checkpoint]]:
    """(checkpoint sequences read before the head, head sequence, checkpoints read after)."""
    earlier = [row[0] for row in store.all_checkpoints(database)]
    head = store.max_sequence(database)
    return earlier, head, [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(database)]


def verify_database(
    database: peewee.Database | peewee.DatabaseProxy | None = None,
    *,
    up_to=None,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    checkpoint_interval: int | None = None,
    progress: Progress | None = None,
    witness=None,
) -> VerifyResult:
    """Verify the chain (up to an event id or sequence, or all of it).

    ``public_keys`` (key id -> Ed25519 public key, see :func:`checkpoints.keys_by_id`)
    turns on signature checks and the freshness rule; ``checkpoint_interval`` is the
    configured interval, used for that rule when no checkpoint exists yet. ``witness``
    (:mod:`flowker.audit.witness`) adds its checkpoints: each must be in the database,
    unchanged, with the witnessed hash at its sequence, and none past the end.

    Verifying up to the newest entry is verifying the whole chain: the checks of the
    chain's end (checkpoints past it, the freshness rule, the witness) run too.
    """
    database = store.resolve(database)
    witnessed = witness.witnessed() if witness is not None else []
    with connection(database):
        # Checkpoints first, then the head, then checkpoints again: a checkpoint is
        # committed with the entry it signs, so one read before the head can only point
        # past the head if entries were removed, and the second read sees every
        # checkpoint up to the head.
        earlier_sequences, head, current = _read_ends(database)
        if witnessed and max(w.sequence for w in witnessed) > head:
            # An append sends its checkpoint to the witness before its transaction commits:
            # once the append lock is ours, that append has committed or rolled back.
            with database.atomic():
                store.lock_for_append(database)
                earlier_sequences, head, current = _read_ends(database)
        target = head if up_to is None else resolve_target(database, up_to)
        at_head = target >= head

        problems: list[tuple[int, str]] = []  # (sequence, message)
        expected_heads: dict[int, tuple[str, str]] = {}
        last_signed, last_interval, consistent = 0, None, 0
        covered = [c for c in current if c.sequence <= target]
        for checkpoint in covered:
            problem, interval = cp.check(checkpoint, public_keys)
            if problem:
                problems.append((checkpoint.sequence, problem))
                continue
            expected_heads[checkpoint.sequence] = (
                checkpoint.head_hash,
                f"the checkpoint at sequence {checkpoint.sequence}",
            )
            last_signed, last_interval, consistent = checkpoint.sequence, interval, consistent + 1
        problems += _checkpoint_chain_problems(covered)
        if at_head:
            beyond = [sequence for sequence in earlier_sequences if sequence > target]
            if beyond:
                problems.append(
                    (
                        target + 1,
                        (
                            f"a checkpoint signs sequence {max(beyond)} but the chain ends at {target}: "
                            "entries were removed from the end"
                        ),
                    )
                )
        problems += _witness_problems(
            witnessed, {c.sequence: c for c in current}, target, head, at_head, expected_heads
        )

        column_check = _ColumnCheck(database, target)
        checked, bad_sequence, message = _walk_links(database, target, expected_heads, progress)
        if bad_sequence is not None:
            problems.append((bad_sequence, message))
        column_bad = column_check.first_mismatch()
        if column_bad is not None:
            problems.append((column_bad, f"entry {column_bad}: its indexed columns differ from its hashed content"))

        if at_head and public_keys is not None and not problems:
            interval = (last_interval or 0) if last_signed else (checkpoint_interval or 0)
            if interval and target - last_signed >= interval:
                since = f"the last signed checkpoint at sequence {last_signed}" if last_signed else "the start"
                problems.append(
                    (
                        target + 1,
                        (
                            f"the chain ends {target - last_signed} entries after {since}, but a checkpoint is "
                            f"signed every {interval} entries: checkpoints were removed (or entries were "
                            "appended by a process without the signing key)"
                        ),
                    )
                )

        signatures = public_keys is not None
        if problems:
            sequence, message = min(problems, key=lambda p: p[0])
            event_id = store.event_id_at(database, sequence) if sequence <= target else None
            total = min(checked, max(sequence, 1)) if sequence <= target else checked
            return VerifyResult(
                False, total, f"hash chain broken: {message}", event_id, sequence, consistent, signatures, target
            )
        if target == 0:
            text = "hash chain is valid: the chain is empty"
        else:
            text = f"hash chain is valid: {checked} {'entry' if checked == 1 else 'entries'} checked"
        if consistent:
            text += (
                f", {consistent} signed checkpoints verified (last at sequence {last_signed})"
                if signatures
                else f", {consistent} checkpoints consistent (signatures not checked: no public key)"
            )
        elif signatures and target:
            text += ", no checkpoint covers it yet"
        if witness is not None:
            held = sum(1 for w in witnessed if w.sequence <= target)
            text += f", {held} witnessed checkpoint{'s' if held != 1 else ''} matched ({witness.url})"
        return VerifyResult(True, checked, text, None, None, consistent, signatures, target)
