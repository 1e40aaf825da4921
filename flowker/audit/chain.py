"""Appending to the audit chain, and the API the rest of Flowker uses.

::

    from flowker.audit.chain import append, Actor, SYSTEM_ACTOR
    with write_transaction():
        workflow.save()
        append(EventType.WORKFLOW_UPDATED, Action.UPDATE, Result.SUCCESS, "workflow", workflow.id,
               actor=Actor(type="api_key", id="ci-bot", ip="127.0.0.1"), metadata={...})

:func:`append` joins the caller's transaction (or opens its own), takes the append lock
(SQLite: the transaction is already ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped
advisory lock), reads the head, and inserts the next entry. Everything that does not depend
on the head (validation, redaction, the canonical text but for sequence and timestamp) is
done before the lock; :func:`prepare_many` lets a caller do it before its transaction too,
which on SQLite is the lock. The state change and its entry commit together or not at
all; the unique ``sequence`` and unique ``previous_hash`` columns make a fork impossible
to commit even if the lock were bypassed. Hashing is described in
:mod:`flowker.audit.canonical`. On PostgreSQL the part under the lock (lock, head read,
hashing, INSERT) is one call of a database function (:mod:`flowker.audit.server_append`),
so the lock is held for that call and the COMMIT only.

Automatic checkpoints need the signing key from settings. Settings are passed down, not
global: the composition root (:class:`flowker.runtime.Runtime`) builds one :class:`AuditLog`
for its database and hands it to everything that appends (stores, the execution service,
recovery). The module functions take ``audit_log=`` too; without it they append with a
plain log (no checkpoints) to ``database``, by default the one bound to the caller's context.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import peewee

from flowker.audit import checkpoints as cp
from flowker.audit import events, server_append, store
from flowker.audit.canonical import (
    GENESIS_HASH,
    NotCanonicalizable,
    entry_text_parts,
    join_entry_text,
    new_event_ids,
    now_timestamp,
    to_hashable,
)
from flowker.audit.events import Action, EventType, Result  # re-exported for callers
from flowker.audit.actors import SYSTEM_ACTOR, UNKNOWN_IP, Actor  # re-exported for callers
from flowker.audit.verify import VerifyResult, verify_database
from flowker.audit.views import checkpoint_to_dict, entry_to_dict  # re-exported for callers
from flowker.errors import AuditChainError, ConfigurationError
from flowker.security.redaction import mask_secret_value, secret_key_test
from flowker.storage.database import is_postgres
from flowker.storage.models import AuditCheckpoint, AuditEntry
from flowker.storage.statements import model_row, row_backed_model

__all__ = [
    "Action",
    "Actor",
    "AuditLog",
    "EventType",
    "PreparedEntry",
    "Result",
    "SYSTEM_ACTOR",
    "VerifyResult",
    "append",
    "append_many",
    "checkpoint_to_dict",
    "create_checkpoint",
    "entry_to_dict",
    "prepare_many",
    "verify_chain",
]


def _text(value: Any, what: str, limit: int) -> str:
    if type(value) is str and 0 < len(value) <= limit and "\x00" not in value:
        return value
    if value is None:
        raise AuditChainError(f"audit {what} is missing")
    text = str(value.value) if isinstance(value, enum.Enum) else str(value)
    if not text or len(text) > limit:
        raise AuditChainError(f"audit {what} must be 1 to {limit} characters")
    if "\x00" in text:
        raise AuditChainError(f"audit {what} must not contain NUL characters")
    return text


_SECRET_KEY = secret_key_test()  # redact()'s test of a key (no extra key names)


def _payload(value: Any, what: str) -> dict:
    if not value:
        if value is None or isinstance(value, Mapping):
            return {}
    if not isinstance(value, Mapping):
        raise AuditChainError(f"audit {what} must be a mapping, not {type(value).__name__}")
    try:
        # Normalised and redacted in one walk (the same as redact(to_hashable(value))): the
        # chain must never hold a secret, in any entry, forever.
        return to_hashable(value, what, secret_key=_SECRET_KEY, mask=mask_secret_value)
    except NotCanonicalizable as exc:
        raise AuditChainError(f"audit {what}: {exc}") from None


_BLANK_ROW = dict.fromkeys(store.ENTRY_COLUMNS)  # an entry's field values, in INSERT column order


class PreparedEntry:
    """An entry validated, redacted and serialized: all but its place in the chain.

    ``AuditLog.append_many`` accepts these (from :meth:`AuditLog.prepare_many`) as well as
    mappings, so a caller can do this work before it opens its write transaction. Each is
    appended once (again only after that transaction rolled back).
    """

    __slots__ = ("entry", "head", "tail", "error")

    def __init__(self, entry: AuditEntry, head: str | None, tail: str | None, error: Exception | None):
        # ``entry`` holds every column in ENTRY_COLUMNS order; the five that depend on the
        # chain's head are filled in under the append lock.
        self.entry, self.head, self.tail, self.error = entry, head, tail, error


class AuditLog:
    """Appends to, checkpoints and verifies the chain of one database.

    ``signing_key`` (an Ed25519 private key object) enables a signed checkpoint whenever
    an append leaves the head ``checkpoint_interval`` or more entries past the last one.
    """

    def __init__(
        self,
        database: peewee.Database | peewee.DatabaseProxy | None = None,
        *,
        signing_key=None,
        checkpoint_interval: int = 1000,
        public_keys=(),
        witness=None,
        metrics=None,
        append_on_server: bool = True,
    ):
        if checkpoint_interval < 0:
            raise ConfigurationError("FLOWKER_AUDIT_CHECKPOINT_INTERVAL must not be negative")
        self._database = database
        self.signing_key = signing_key
        # Where each signed checkpoint also goes before its transaction commits (a
        # flowker.audit.witness.Witness, or None).
        self.witness = witness
        # Counts appends (flowker.observability.metrics.Metrics), when given.
        self.metrics = metrics
        # PostgreSQL: append with one call of migration 10's function (False: from the
        # client, as SQLite does; the lock benchmark compares the two).
        self.append_on_server = append_on_server
        self.checkpoint_interval = int(checkpoint_interval)
        trusted = list(public_keys) + ([signing_key] if signing_key is not None else [])
        self.public_keys = cp.keys_by_id(trusted) if trusted else None

    @classmethod
    def from_settings(cls, settings, database=None, *, metrics=None) -> "AuditLog":
        from flowker.audit.witness import open_witness

        key = cp.load_signing_key(settings.audit_signing_key) if settings.audit_signing_key else None
        witness = open_witness(settings.audit_witness)
        if witness is not None and key is None:
            raise ConfigurationError(
                "FLOWKER_AUDIT_WITNESS needs FLOWKER_AUDIT_SIGNING_KEY: only signed checkpoints are witnessed"
            )
        return cls(
            database,
            signing_key=key,
            checkpoint_interval=settings.audit_checkpoint_interval,
            witness=witness,
            metrics=metrics,
        )

    @property
    def database(self) -> peewee.Database:
        return store.resolve(self._database)

    # -- appending ---------------------------------------------------------------------

    def append(
        self,
        event_type,
        action,
        result,
        resource_type,
        resource_id,
        actor: Actor = SYSTEM_ACTOR,
        context: Mapping | None = None,
        metadata: Mapping | None = None,
    ) -> AuditEntry:
        """Append one entry inside the caller's transaction (or a new one); returns it."""
        prepared = self._prepare(
            new_event_ids(1)[0], event_type, action, result, resource_type, resource_id, actor, context, metadata
        )
        return self._write([prepared])[0]

    def append_many(self, entries) -> list[AuditEntry]:
        """Append several entries, in order, inside the caller's transaction (or a new one).

        Each item is a mapping of :meth:`append`'s arguments (``event_type``, ``action``,
        ``result``, ``resource_type``, ``resource_id``, optional ``actor``, ``context``,
        ``metadata``), or a :class:`PreparedEntry` from :meth:`prepare_many`. One lock, one
        head read and one multi-row INSERT for all of them: the same chain as appending
        them one by one, at a fraction of the cost.
        """
        prepared = self.prepare_many(entries)
        return self._write(prepared) if prepared else []

    @classmethod
    def prepare_many(cls, entries) -> list[PreparedEntry]:
        """Validate, redact and serialize items of :meth:`append_many` (PreparedEntry items
        pass through): the work that needs neither the database nor the append lock."""
        entries = entries if isinstance(entries, list) else list(entries)
        event_ids = new_event_ids(len(entries))
        return [
            item
            if isinstance(item, PreparedEntry)
            else cls._prepare(
                event_id,
                item["event_type"],
                item["action"],
                item["result"],
                item["resource_type"],
                item["resource_id"],
                item.get("actor"),
                item.get("context"),
                item.get("metadata"),
            )
            for event_id, item in zip(event_ids, entries)
        ]

    @staticmethod
    def _prepare(
        event_id, event_type, action, result, resource_type, resource_id, actor, context, metadata
    ) -> PreparedEntry:
        actor = actor if actor is not None else SYSTEM_ACTOR
        try:
            event_type = events.event_type_value(event_type)
            action = events.action_value(action)
            result = events.result_value(result)
            resource_type = events.resource_type_value(resource_type)
            actor_type = events.actor_type_value(actor.type)
        except ValueError as exc:
            raise AuditChainError(str(exc)) from None
        resource_id = _text(resource_id, "resource id", 255)
        actor_id = _text(actor.id, "actor id", 255)
        actor_ip = _text(actor.ip or UNKNOWN_IP, "actor IP address", 45)
        context = _payload(context, "context")
        metadata = _payload(metadata, "metadata")
        if actor.request_id is not None:
            # Only entries made for a request carry it: the others' text stays as it was.
            metadata["requestId"] = _text(actor.request_id, "request id", 128)
        head = tail = None
        error: Exception | None = None
        try:
            head, tail = entry_text_parts(
                event_id=event_id,
                event_type=event_type,
                action=action,
                result=result,
                resource_type=resource_type,
                resource_id=resource_id,
                actor_type=actor_type,
                actor_id=actor_id,
                actor_ip=actor_ip,
                context=context,
                metadata=metadata,
            )
        except NotCanonicalizable as exc:
            # Raised where the entry is written, as when the text was built under the lock.
            error = AuditChainError(str(exc))
        except Exception as exc:  # e.g. rfc8785 sorting a key with a lone surrogate: likewise
            error = exc
        row = _BLANK_ROW.copy()
        entry = row_backed_model(AuditEntry, row)
        row["event_id"], row["event_type"], row["action"], row["result"] = event_id, event_type, action, result
        row["resource_type"], row["resource_id"] = resource_type, resource_id
        row["actor_type"], row["actor_id"], row["actor_ip"] = actor_type, actor_id, actor_ip
        return PreparedEntry(entry, head, tail, error)

    def _write(self, prepared: list[PreparedEntry]) -> list[AuditEntry]:
        database = self.database
        if self.append_on_server and is_postgres(database) and server_append.fits(prepared):
            return self._write_on_server(database, prepared)
        transaction = nullcontext() if database.in_transaction() else database.atomic()
        sha256 = hashlib.sha256
        with transaction:
            # From here on only what depends on the head: the append lock is held until commit
            # (on SQLite from the transaction's BEGIN IMMEDIATE).
            head = store.lock_and_head(database)
            sequence, previous = (head[0], head[1]) if head else (0, GENESIS_HASH)
            # Assigned under the lock, so timestamps never run backwards along the chain
            # unless the clock itself does.
            timestamp = now_timestamp()
            checkpoints = []
            check = self.signing_key is not None and self.checkpoint_interval
            last_checkpoint = store.last_checkpoint_sequence(database) if check else 0
            values: list = []
            for item in prepared:
                sequence += 1
                if item.error is not None:
                    raise item.error from None
                assert item.head is not None and item.tail is not None  # set whenever error is None
                try:
                    canonical = join_entry_text(item.head, sequence, timestamp, item.tail)
                except NotCanonicalizable as exc:
                    raise AuditChainError(str(exc)) from None
                digest = sha256((previous + canonical).encode("utf-8")).hexdigest()  # canonical.chain_hash
                row = model_row(item.entry)
                row["sequence"], row["timestamp"], row["canonical"] = sequence, timestamp, canonical
                row["previous_hash"], row["hash"] = previous, digest
                values += row.values()
                previous = digest
                if check and sequence - last_checkpoint >= self.checkpoint_interval:
                    checkpoints.append((sequence, digest))
                    last_checkpoint = sequence
            store.insert_values(database, len(prepared), values)
            if checkpoints:  # only the append that completes an interval does more
                self._insert_checkpoints(database, checkpoints)
        if self.metrics is not None:
            self.metrics.audit_appended(len(prepared))
        return [item.entry for item in prepared]

    def _write_on_server(self, database, prepared: list[PreparedEntry]) -> list[AuditEntry]:
        """:meth:`_write` on PostgreSQL with one server-side call (see :mod:`flowker.audit.server_append`)."""
        transaction = nullcontext() if database.in_transaction() else database.atomic()
        check = self.signing_key is not None and self.checkpoint_interval
        rows = [model_row(item.entry) for item in prepared]
        heads: list[str] = []
        tails: list[str] = []
        for item in prepared:
            assert item.head is not None and item.tail is not None  # server_append.fits checked them
            heads.append(item.head)
            tails.append(item.tail)
        with transaction:
            first, timestamp, previous, hashes, last_checkpoint, _locked_at = server_append.append(
                database, rows, heads, tails, last_checkpoint=bool(check)
            )
            checkpoints = []
            if check:
                for sequence, digest in enumerate(hashes, first):
                    if sequence - last_checkpoint >= self.checkpoint_interval:
                        checkpoints.append((sequence, digest))
                        last_checkpoint = sequence
            if checkpoints:  # only the append that completes an interval does more
                self._insert_checkpoints(database, checkpoints)
        for sequence, row, head, tail, digest in zip(range(first, first + len(rows)), rows, heads, tails, hashes):
            row["sequence"], row["timestamp"] = sequence, timestamp
            row["canonical"] = join_entry_text(head, sequence, timestamp, tail)  # what the function stored
            row["previous_hash"], row["hash"] = previous, digest
            previous = digest
        if self.metrics is not None:
            self.metrics.audit_appended(len(prepared))
        return [item.entry for item in prepared]

    # -- checkpoints -------------------------------------------------------------------

    def _insert_checkpoints(self, database, heads: list[tuple[int, str]]) -> list[cp.Checkpoint]:
        """Sign, store and witness checkpoints at ``heads`` ((sequence, hash), in order),
        inside the append's transaction and under its lock. The witness hears of each
        before the transaction commits: if it is unreachable or refuses, the exception
        rolls the entries and their state change back, so nothing is acknowledged that the
        witness does not hold."""
        statement = store.last_checkpoint_statement(database)
        previous = cp.checkpoint_hash(statement) if statement is not None else cp.GENESIS_CHECKPOINT_HASH
        signed = []
        for sequence, head_hash in heads:
            checkpoint = cp.sign(
                self.signing_key,
                sequence=sequence,
                head_hash=head_hash,
                interval=self.checkpoint_interval,
                created_at=now_timestamp(),
                previous_checkpoint_hash=previous,
            )
            store.insert_checkpoint(database, checkpoint.to_row())
            signed.append(checkpoint)
            previous = checkpoint.hash
        if self.witness is not None:
            for checkpoint in signed:
                self.witness.submit(checkpoint)
        return signed

    def create_checkpoint(self) -> AuditCheckpoint | None:
        """Sign the current head now (None for an empty chain); reuses one already there."""
        if self.signing_key is None:
            raise ConfigurationError("no audit signing key is configured (FLOWKER_AUDIT_SIGNING_KEY)")
        database = self.database
        transaction = nullcontext() if database.in_transaction() else database.atomic()
        with transaction:
            store.lock_for_append(database)
            head = store.head(database)
            if head is None:
                return None
            existing = store.checkpoint_at(database, head[0])
            if existing is not None and existing[1] == head[1]:
                checkpoint = cp.Checkpoint.from_row(existing)
            elif existing is not None:
                raise AuditChainError(
                    f"a checkpoint at sequence {head[0]} signs another head hash: the chain was tampered with"
                )
            else:
                checkpoint = self._insert_checkpoints(database, [head])[0]
        return AuditCheckpoint(**dict(zip(store.CHECKPOINT_COLUMNS, checkpoint.to_row())))

    # -- verification ------------------------------------------------------------------

    def verify(self, up_to_id=None, progress=None) -> VerifyResult:
        """Every check ``flowker audit verify`` runs with the same settings, up to the entry,
        including the witness's checkpoints when one is configured."""
        return verify_database(
            self.database,
            up_to=up_to_id,
            public_keys=self.public_keys,
            checkpoint_interval=self.checkpoint_interval if self.signing_key is not None else None,
            progress=progress,
            witness=self.witness,
        )


# --------------------------------------------------------------------------- module API


def _log(audit_log: AuditLog | None, database) -> AuditLog:
    """``audit_log``, else a plain log (no checkpoints) of ``database`` (default: the bound one)."""
    return audit_log if audit_log is not None else AuditLog(store.resolve(database))


def append(
    event_type,
    action,
    result,
    resource_type,
    resource_id,
    actor: Actor = SYSTEM_ACTOR,
    context: Mapping | None = None,
    metadata: Mapping | None = None,
    *,
    database=None,
    audit_log: AuditLog | None = None,
) -> AuditEntry:
    """Append an entry with ``audit_log`` (else to the chain of ``database``, default: the
    bound one, without checkpoints). See :class:`AuditLog`."""
    log = _log(audit_log, database)
    return log.append(
        event_type, action, result, resource_type, resource_id, actor=actor, context=context, metadata=metadata
    )


def append_many(entries, *, database=None, audit_log: AuditLog | None = None) -> list[AuditEntry]:
    """Append several entries in order under one lock and one INSERT. See :meth:`AuditLog.append_many`."""
    return _log(audit_log, database).append_many(entries)


def prepare_many(entries) -> list[PreparedEntry]:
    """Items for :func:`append_many`, validated, redacted and serialized ahead of the write
    transaction (less work while the append lock is held). See :meth:`AuditLog.prepare_many`."""
    return AuditLog.prepare_many(entries)


def create_checkpoint(
    signing_key=None, *, database=None, interval: int | None = None, audit_log: AuditLog | None = None
) -> AuditCheckpoint | None:
    """Sign the head now. Without ``signing_key``, ``audit_log``'s key is used.

    ``interval`` is the promise written into the statement (default: ``audit_log``'s
    interval when it signs automatically, else 0 = no promise).
    """
    log = _log(audit_log, database)
    if signing_key is None:
        return log.create_checkpoint()
    if isinstance(signing_key, str):
        signing_key = cp.load_signing_key(signing_key)
    if interval is None:
        interval = log.checkpoint_interval if log.signing_key is not None else 0
    return AuditLog(
        log.database, signing_key=signing_key, checkpoint_interval=interval, witness=log.witness
    ).create_checkpoint()


def verify_chain(
    up_to_id=None,
    progress=None,
    *,
    database=None,
    public_keys=None,
    checkpoint_interval: int | None = None,
    audit_log: AuditLog | None = None,
) -> VerifyResult:
    """Verify up to an event id (or sequence number), or the whole chain.

    Checkpoint signatures are checked with ``public_keys`` (keys or a key-id mapping) or,
    by default, with the key of ``audit_log``; without either, checkpoints are checked for
    consistency only.
    """
    log = _log(audit_log, database)
    if public_keys is None:
        return log.verify(up_to_id, progress)
    keys = public_keys if isinstance(public_keys, Mapping) else cp.keys_by_id(public_keys)
    return verify_database(
        log.database,
        up_to=up_to_id,
        public_keys=keys,
        checkpoint_interval=checkpoint_interval,
        progress=progress,
        witness=log.witness,
    )
