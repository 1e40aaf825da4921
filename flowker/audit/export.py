"""Exporting the chain to a JSON Lines file, and verifying such a file offline.

File format (one JSON object per line, UTF-8)::

    {"type": "header", "format": "flowker-audit-export", "formatVersion": 1,
     "exportedAt", "genesisHash", "checkpointInterval", "headSequence"}
    {"type": "entry", "sequence", "previousHash", "hash", "canonical"}      one per entry
    {"type": "checkpoint", "sequence", "headHash", "keyId", "createdAt",
     "statement", "signature"}                       right after the entry it signs
    {"type": "end", "entries", "checkpoints", "headHash", "exportedAt",
     "keyId", "statement", "signature"}

``canonical`` is the exact hashed text, so the file is verified with nothing but sha256
and the Ed25519 public key. The end record's ``statement`` is the RFC 8785 canonical JSON
of ``{"type": "flowker.audit.export", "v": 1, "entries", "checkpoints", "headHash",
"exportedAt", "keyId"}``, signed by the exporter when it has the signing key. Offline
verification with a public key requires that signature, so a file cut short anywhere (even
right after a checkpoint, with forged unsigned records) is detected. Exporting only reads
the database.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from flowker.audit import checkpoints as cp
from flowker.audit import store
from flowker.audit.canonical import GENESIS_HASH, now_timestamp
from flowker.audit.verify import VerifyResult
from flowker.errors import ConfigurationError
from flowker.storage.database import connection

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "flowker-audit-export"
FORMAT_VERSION = 1
END_STATEMENT_TYPE = "flowker.audit.export"

Progress = Callable[[int, int], None]


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_chain(
    database, out_path: str, *, signing_key=None, checkpoint_interval: int = 0, progress: Progress | None = None
) -> dict:
    """Write every entry and checkpoint to ``out_path`` (atomically: a temporary file renamed).

    With ``signing_key`` the end record is signed. Returns ``{"entries", "checkpoints",
    "headHash", "signed"}``.
    """
    database = store.resolve(database)
    exported_at = now_timestamp()
    with connection(database):
        # Checkpoints before the head: each is committed with the entry it signs, so all of
        # them are at or below the head read next, unless entries were removed.
        pending = [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(database)]
        pending.reverse()  # pop() from the end yields them in sequence order
        head = store.head(database)
        head_sequence = head[0] if head else 0

        temporary = f"{out_path}.partial-{os.getpid()}"
        written_checkpoints, last_hash, written = 0, GENESIS_HASH, 0
        try:
            with open(temporary, "w", encoding="utf-8", newline="\n") as out:
                out.write(
                    _line(
                        {
                            "type": "header",
                            "format": FORMAT,
                            "formatVersion": FORMAT_VERSION,
                            "exportedAt": exported_at,
                            "genesisHash": GENESIS_HASH,
                            "checkpointInterval": checkpoint_interval,
                            "headSequence": head_sequence,
                        }
                    )
                )

                def flush_checkpoints(up_to: int) -> None:
                    nonlocal written_checkpoints
                    while pending and pending[-1].sequence <= up_to:
                        out.write(_line({"type": "checkpoint", **pending.pop().to_dict()}))
                        written_checkpoints += 1

                for page in store.stream_links(database, head_sequence):
                    for sequence, canonical, previous, digest in page:
                        flush_checkpoints(sequence - 1)
                        out.write(
                            _line(
                                {
                                    "type": "entry",
                                    "sequence": sequence,
                                    "previousHash": previous,
                                    "hash": digest,
                                    "canonical": canonical,
                                }
                            )
                        )
                        flush_checkpoints(sequence)
                        last_hash = digest
                    written += len(page)
                    if progress is not None:
                        progress(written, head_sequence)
                # Checkpoints past the end (a truncated chain) are exported too, so the
                # offline verifier reports them.
                flush_checkpoints(2**62)
                out.write(_line(_end_record(signing_key, written, written_checkpoints, last_hash, exported_at)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, out_path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return {
        "entries": written,
        "checkpoints": written_checkpoints,
        "headHash": last_hash,
        "signed": signing_key is not None,
    }


def _end_fields(
    entries: int | None, checkpoints: int | None, head_hash: str | None, exported_at: str | None, kid: str | None
) -> dict:  # None: a field missing from a file being verified
    return {
        "entries": entries,
        "checkpoints": checkpoints,
        "headHash": head_hash,
        "exportedAt": exported_at,
        "keyId": kid,
    }


def _end_record(signing_key, entries: int, checkpoints: int, head_hash: str, exported_at: str) -> dict:
    kid = cp.key_id(signing_key) if signing_key is not None else None
    record = {"type": "end", **_end_fields(entries, checkpoints, head_hash, exported_at, kid)}
    if signing_key is not None:
        document = {
            "type": END_STATEMENT_TYPE,
            "v": FORMAT_VERSION,
            **_end_fields(entries, checkpoints, head_hash, exported_at, kid),
        }
        record["statement"], record["signature"] = cp.sign_document(signing_key, document)
    return record


class _Broken(Exception):
    def __init__(self, sequence: int | None, message: str, event_id: str | None = None):
        super().__init__(message)
        self.sequence, self.message, self.event_id = sequence, message, event_id


def _event_id(canonical: str) -> str | None:
    try:
        return json.loads(canonical)["entry"]["eventId"]
    except (ValueError, KeyError, TypeError):
        return None


def verify_export(
    path: str, public_keys: Mapping[str, Ed25519PublicKey] | None = None, progress: Progress | None = None
) -> VerifyResult:
    """Verify an export file offline. ``public_keys``: key id -> Ed25519 public key."""
    try:
        handle = open(path, "r", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the export file {path}: {exc.strerror}") from None
    state = {"entries": 0, "signed": 0}
    with handle:
        try:
            _verify_lines(handle, public_keys, progress, state)
        except _Broken as broken:
            return VerifyResult(
                False,
                state["entries"],
                f"export broken: {broken.message}",
                broken.event_id,
                broken.sequence,
                state["signed"],
                public_keys is not None,
                state["entries"],
            )
    entries, signed = state["entries"], state["signed"]
    text = f"export is valid: {entries} entries checked"
    if public_keys is not None:
        text += f", {signed} signed checkpoints verified, the export's end is signed"
    else:
        text += f", {signed} checkpoints consistent (signatures NOT checked: no public key given)"
    return VerifyResult(True, entries, text, None, None, signed, public_keys is not None, entries)


def _records(lines: Iterable[str]):
    for number, raw in enumerate(lines, start=1):
        if not raw.endswith("\n"):
            raise _Broken(None, f"line {number} is cut short: the file was truncated")
        try:
            record = json.loads(raw)
        except ValueError:
            raise _Broken(None, f"line {number} is not valid JSON") from None
        if not isinstance(record, dict):
            raise _Broken(None, f"line {number} is not a JSON object")
        yield number, record


def _verify_lines(lines, public_keys, progress, state) -> None:
    sha256 = hashlib.sha256
    records = _records(lines)
    first = next(records, None)
    if first is None:
        raise _Broken(None, "the file is empty")
    _, header = first
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise _Broken(None, "line 1 is not a Flowker audit export header")
    if header.get("formatVersion") != FORMAT_VERSION:
        raise _Broken(None, f"unsupported export format version {header.get('formatVersion')!r}")
    claimed = header.get("headSequence")
    expected, last = 1, header.get("genesisHash")
    if last != GENESIS_HASH:
        raise _Broken(None, "the header's genesis hash is not the Flowker genesis value")
    future: dict[int, cp.Checkpoint] = {}  # checkpoints seen before their entry
    checkpoint_count = 0
    previous_checkpoint: cp.Checkpoint | None = None  # the checkpoints' own chain
    end = None
    for number, record in records:
        kind = record.get("type")
        if end is not None:
            raise _Broken(None, f"line {number} follows the end record")
        if kind == "entry":
            sequence = expected
            canonical, previous, digest = record.get("canonical"), record.get("previousHash"), record.get("hash")
            if not all(isinstance(v, str) for v in (canonical, previous, digest)):
                raise _Broken(sequence, f"line {number}: the entry record is incomplete")
            try:
                inner = json.loads(canonical)["entry"]["sequence"]
            except (ValueError, KeyError, TypeError):
                inner = None
            if inner != expected or record.get("sequence") != expected:
                raise _Broken(
                    inner if isinstance(inner, int) else None,
                    f"line {number}: expected entry {expected}, found {inner!r}: entries are missing or out of order",
                    _event_id(canonical),
                )
            if previous != last:
                raise _Broken(
                    sequence,
                    f"entry {sequence}: its previous hash is not the hash of entry {sequence - 1}",
                    _event_id(canonical),
                )
            if sha256((previous + canonical).encode("utf-8")).hexdigest() != digest:
                raise _Broken(sequence, f"entry {sequence}: its hash does not match its content", _event_id(canonical))
            state["entries"] = sequence
            last, expected = digest, expected + 1
            waiting = future.pop(sequence, None)
            if waiting is not None:
                _check_checkpoint(waiting, sequence, digest, public_keys, state)
            if progress is not None and sequence % 50_000 == 0:
                progress(sequence, claimed if isinstance(claimed, int) else sequence)
        elif kind == "checkpoint":
            checkpoint_count += 1
            try:
                checkpoint = cp.Checkpoint.from_dict(record)
            except KeyError:
                raise _Broken(None, f"line {number}: the checkpoint record is incomplete") from None
            if not isinstance(checkpoint.sequence, int) or isinstance(checkpoint.sequence, bool):
                raise _Broken(None, f"line {number}: the checkpoint has no sequence number")
            if not isinstance(checkpoint.statement, str):
                raise _Broken(checkpoint.sequence, f"line {number}: the checkpoint has no statement")
            _check_link(checkpoint, previous_checkpoint)
            previous_checkpoint = checkpoint
            head = expected - 1
            if checkpoint.sequence == head:
                _check_checkpoint(checkpoint, head, last, public_keys, state)
            elif checkpoint.sequence > head:
                future[checkpoint.sequence] = checkpoint
            else:
                raise _Broken(
                    checkpoint.sequence,
                    f"line {number}: the checkpoint for sequence {checkpoint.sequence} comes after later entries",
                )
        elif kind == "end":
            end = record
        else:
            raise _Broken(None, f"line {number}: unknown record type {kind!r}")
    head = expected - 1
    if future:
        raise _Broken(
            head + 1,
            f"a checkpoint signs sequence {max(future)} but the export ends at entry {head}: "
            "entries were removed from the end",
        )
    if end is None:
        raise _Broken(head + 1, f"the end record is missing after entry {head}: the file was truncated")
    if end.get("entries") != head or end.get("checkpoints") != checkpoint_count or end.get("headHash") != last:
        raise _Broken(head + 1, "the end record does not match the entries and checkpoints before it")
    if public_keys is not None:
        _check_end_signature(end, public_keys, head)
    if isinstance(claimed, int) and claimed != head:
        raise _Broken(head + 1, f"the header announces {claimed} entries but the file holds {head}")


def _check_end_signature(end: dict, public_keys, head: int) -> None:
    statement, signature, kid = end.get("statement"), end.get("signature"), end.get("keyId")
    if not (isinstance(statement, str) and isinstance(signature, str) and isinstance(kid, str)):
        raise _Broken(
            head + 1,
            "the end record is not signed, so a truncated export cannot be told from a "
            "whole one (export with FLOWKER_AUDIT_SIGNING_KEY set)",
        )
    problem = cp.signature_problem(public_keys, kid, statement, signature)
    if problem:
        raise _Broken(head + 1, f"the export's end record: {problem}")
    try:
        fields = json.loads(statement)
    except ValueError:
        fields = None
    expected = {
        "type": END_STATEMENT_TYPE,
        "v": FORMAT_VERSION,
        **_end_fields(end.get("entries"), end.get("checkpoints"), end.get("headHash"), end.get("exportedAt"), kid),
    }
    if fields != expected:
        raise _Broken(head + 1, "the end record differs from its signed statement: the file was altered")


def _check_link(checkpoint: cp.Checkpoint, previous: cp.Checkpoint | None) -> None:
    named = checkpoint.previous_checkpoint_hash
    if named is None:
        return  # a version-1 checkpoint, from before checkpoints were chained
    if previous is None and named != cp.GENESIS_CHECKPOINT_HASH:
        raise _Broken(
            checkpoint.sequence,
            f"the checkpoint at sequence {checkpoint.sequence} follows a checkpoint "
            "the export does not hold: earlier checkpoints were removed",
        )
    if previous is not None and named != previous.hash:
        raise _Broken(
            checkpoint.sequence,
            f"the checkpoint at sequence {checkpoint.sequence} does not follow the "
            f"checkpoint at sequence {previous.sequence}: a checkpoint between them was removed or replaced",
        )


def _check_checkpoint(checkpoint: cp.Checkpoint, sequence: int, digest: str, public_keys, state) -> None:
    problem, _interval = cp.check(checkpoint, public_keys)
    if problem:
        raise _Broken(sequence, problem)
    if checkpoint.head_hash != digest:
        raise _Broken(
            sequence,
            f"entry {sequence}: its hash differs from the head hash signed by the checkpoint (the chain was rewritten)",
        )
    state["signed"] += 1


def read_header(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as handle:
        return json.loads(handle.readline() or "{}")
