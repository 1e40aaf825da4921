"""API keys kept in the database (DESIGN §13): made, listed, revoked, and checked.

A key is ``flk_<lookup id>_<secret>``: 12 hex characters that find its row, then 43
characters (256 random bits) of secret. Only SHA-256 of the whole key is stored. Keys are
random, not passwords, so a slow password hash would buy nothing: nobody can try 2^256
secrets against a hash, and the lookup id only names a row.

Checking a key reads its row on every request (one indexed read, no cache), so a revoked
or expired key is refused by every process and host on the database at once. The
``last_used_at`` write is batched: each process writes it at most once per key per
``last_used_interval`` seconds.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from flowker.access import Principal, PrincipalKind, Role, parse_role
from flowker.errors import Conflict, NotFound, UnprocessableEntity
from flowker.error_codes import ErrorCode
from flowker.storage.database import bound_to, write_transaction
from flowker.storage.lookups import api_key_by_lookup_id
from flowker.storage.models import ApiKeyRecord, utcnow

KEY_PREFIX = "flk_"
_KEY_SHAPE = re.compile(r"^flk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})\Z")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
WORKFLOW_NAME_MAX = 100
MAX_SCOPE = 100
DEFAULT_LAST_USED_INTERVAL = 60.0
RESOURCE_TYPE = "api_key"
UNCHANGED = object()  # change(): a field not given
_DURATION = re.compile(r"^(\d{1,6})([smhdw])\Z")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> tuple[str, str]:
    """(lookup id, key)."""
    lookup_id = secrets.token_hex(6)
    return lookup_id, f"{KEY_PREFIX}{lookup_id}_{secrets.token_urlsafe(32)}"


def parse_expiry(text: str | None, now: _dt.datetime) -> _dt.datetime | None:
    """``90d``, ``12h``, ``30m``, ``2w``, ``45s`` from now, or an ISO 8601 date-time (UTC
    when it names no zone); None for no expiry. UnprocessableEntity otherwise."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    match = _DURATION.match(text)
    if match:
        seconds = int(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        if seconds <= 0:
            raise _invalid("the expiry must be in the future")
        return now + _dt.timedelta(seconds=seconds)
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(
            f"expiry {text[:40]!r} is neither a duration (90d, 12h, 30m, 2w) nor an ISO 8601 date-time"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    if moment <= now:
        raise _invalid("the expiry must be in the future")
    return moment


def _invalid(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(message, code=ErrorCode.INVALID_API_KEY_REQUEST)


def iso(moment: _dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredKey:
    """A key's row without its hash: what lists and answers show."""

    name: str
    role: str
    workflows: tuple[str, ...] | None
    created_at: _dt.datetime
    created_by: str
    expires_at: _dt.datetime | None
    revoked_at: _dt.datetime | None
    last_used_at: _dt.datetime | None

    @classmethod
    def of(cls, row: ApiKeyRecord) -> "StoredKey":
        return cls(
            name=row.name,
            role=row.role,
            workflows=tuple(row.workflows) if row.workflows is not None else None,
            created_at=row.created_at,
            created_by=row.created_by,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )

    def status(self, now: _dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: _dt.datetime) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "workflows": list(self.workflows) if self.workflows is not None else None,
            "status": self.status(now),
            "createdAt": iso(self.created_at),
            "createdBy": self.created_by,
            "expiresAt": iso(self.expires_at),
            "revokedAt": iso(self.revoked_at),
            "lastUsedAt": iso(self.last_used_at),
        }


class ApiKeyStore:
    """The keys of one database; every change is audited in its own transaction.

    ``reserved_names``: names of ``FLOWKER_API_KEYS`` entries, which a stored key may not
    take (the audit actor would be ambiguous). ``clock`` (seconds) is for tests.
    """

    def __init__(
        self,
        database,
        audit_log=None,
        *,
        reserved_names=(),
        last_used_interval: float = DEFAULT_LAST_USED_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.database = database
        self.audit_log = audit_log
        self.reserved_names = frozenset(reserved_names)
        self.last_used_interval = last_used_interval
        self.clock = clock
        self._last_written: dict[str, float] = {}  # key row id -> clock() of this process's last write
        self._lock = threading.Lock()
        self.last_used_writes = 0  # for tests and benchmarks: how many last-used writes this process made

    # -- changes -----------------------------------------------------------------------

    def create(
        self,
        name: str,
        role: str,
        actor,
        *,
        workflows=None,
        expires: str | None = None,
    ) -> tuple[StoredKey, str]:
        """A new key; returns it with the key text, which is never available again."""
        name = self._checked_name(name)
        try:
            parsed_role = parse_role(role)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        scope = self._checked_scope(workflows)
        if scope is not None and parsed_role is Role.ADMIN:
            raise _invalid("an admin key cannot be limited to workflows (admin manages keys for every workflow)")
        now = utcnow()
        expires_at = parse_expiry(expires, now)
        if name in self.reserved_names:
            raise Conflict(f"FLOWKER_API_KEYS already names a key {name!r}", code=ErrorCode.API_KEY_NAME_TAKEN)
        lookup_id, key = new_key()
        with bound_to(self.database), write_transaction(self.database):
            existing = ApiKeyRecord.get_or_none(ApiKeyRecord.name == name)
            if existing is not None:
                if existing.revoked_at is None and (existing.expires_at is None or existing.expires_at > now):
                    raise Conflict(
                        f"an API key named {name!r} exists; revoke it first", code=ErrorCode.API_KEY_NAME_TAKEN
                    )
                existing.delete_instance()  # a revoked or expired key gives its name up
            row = ApiKeyRecord.create(
                name=name,
                lookup_id=lookup_id,
                key_hash=key_digest(key),
                role=parsed_role.value,
                workflows=list(scope) if scope is not None else None,
                created_at=now,
                created_by=actor.id,
                expires_at=expires_at,
            )
            self._audit("API_KEY_CREATED", "CREATE", row, actor)
        return StoredKey.of(row), key

    def change(self, name: str, actor, *, role=None, workflows=UNCHANGED, expires=UNCHANGED) -> StoredKey:
        """Change a live key's role, workflow scope (None: every workflow) or expiry (None:
        never); the key itself stays the same. Audited as API_KEY_CHANGED with before/after."""
        now = utcnow()
        with bound_to(self.database), write_transaction(self.database):
            row = ApiKeyRecord.get_or_none(ApiKeyRecord.name == name)
            if row is None or StoredKey.of(row).status(now) != "active":
                raise NotFound(f"no active API key named {str(name)[:100]!r}", code=ErrorCode.API_KEY_NOT_FOUND)
            before = {"role": row.role, "workflows": row.workflows, "expiresAt": iso(row.expires_at)}
            if role is not None:
                try:
                    row.role = parse_role(role).value
                except ValueError as exc:
                    raise _invalid(str(exc)) from None
            if workflows is not UNCHANGED:
                scope = self._checked_scope(workflows)
                row.workflows = list(scope) if scope is not None else None
            if expires is not UNCHANGED:
                row.expires_at = parse_expiry(expires, now)
            if row.workflows is not None and row.role == Role.ADMIN:
                raise _invalid("an admin key cannot be limited to workflows (admin manages keys for every workflow)")
            row.save(only=[ApiKeyRecord.role, ApiKeyRecord.workflows, ApiKeyRecord.expires_at])
            self._audit("API_KEY_CHANGED", "UPDATE", row, actor, {"before": before})
        return StoredKey.of(row)

    def revoke(self, name: str, actor) -> StoredKey:
        with bound_to(self.database), write_transaction(self.database):
            row = ApiKeyRecord.get_or_none(ApiKeyRecord.name == name)
            if row is None or row.revoked_at is not None:
                raise NotFound(f"no API key named {name[:100]!r} to revoke", code=ErrorCode.API_KEY_NOT_FOUND)
            row.revoked_at = utcnow()
            row.save(only=[ApiKeyRecord.revoked_at])
            self._audit("API_KEY_REVOKED", "REVOKE", row, actor)
        return StoredKey.of(row)

    def list(self) -> list[StoredKey]:
        self.record_expired()
        with bound_to(self.database):
            return [StoredKey.of(row) for row in ApiKeyRecord.select().order_by(ApiKeyRecord.name)]

    def record_expired(self, actor=None) -> int:
        """One ``API_KEY_EXPIRED`` audit entry for each key that expired and has none yet."""
        from flowker.audit.chain import SYSTEM_ACTOR

        now = utcnow()
        recorded = 0
        with bound_to(self.database), write_transaction(self.database):
            rows = ApiKeyRecord.select().where(
                ApiKeyRecord.expires_at.is_null(False)
                & (ApiKeyRecord.expires_at <= now)
                & ApiKeyRecord.expiry_recorded_at.is_null()
                & ApiKeyRecord.revoked_at.is_null()
            )
            for row in rows:
                claimed = (
                    ApiKeyRecord.update(expiry_recorded_at=now)
                    .where((ApiKeyRecord.id == row.id) & ApiKeyRecord.expiry_recorded_at.is_null())
                    .execute()
                )
                if claimed:  # another process may have recorded it meanwhile
                    self._audit("API_KEY_EXPIRED", "EXPIRE", row, actor or SYSTEM_ACTOR)
                    recorded += 1
        return recorded

    # -- checking ----------------------------------------------------------------------

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a stored key, or None (unknown, wrong, revoked or expired)."""
        match = _KEY_SHAPE.match(presented)
        if match is None:
            return None
        # Raw SQL on this store's database: building the query with peewee cost more than running it.
        row = api_key_by_lookup_id(self.database, match.group(1))
        if row is None:
            return None
        if not hmac.compare_digest(key_digest(presented).encode(), row.key_hash.encode()):
            return None
        if row.revoked_at is not None:
            return None
        now = utcnow()
        if row.expires_at is not None and row.expires_at <= now:
            if row.expiry_recorded_at is None:
                self.record_expired()
            return None
        self._note_use(row.id, now)
        workflows = frozenset(row.workflows) if row.workflows is not None else None
        return Principal(PrincipalKind.API_KEY, row.name, Role(row.role), workflows)

    def _note_use(self, row_id: str, now: _dt.datetime) -> None:
        tick = self.clock()
        with self._lock:
            last = self._last_written.get(row_id)
            if last is not None and tick - last < self.last_used_interval:
                return
            self._last_written[row_id] = tick
            if len(self._last_written) > 10000:  # bounded: forget the oldest half
                for stale in sorted(self._last_written, key=self._last_written.__getitem__)[:5000]:
                    del self._last_written[stale]
        with bound_to(self.database), write_transaction(self.database):
            ApiKeyRecord.update(last_used_at=now).where(ApiKeyRecord.id == row_id).execute()
        self.last_used_writes += 1

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _checked_name(name) -> str:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise _invalid("a key name is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return name

    @staticmethod
    def _checked_scope(workflows) -> tuple[str, ...] | None:
        if workflows is None:
            return None
        if isinstance(workflows, str):
            workflows = [part.strip() for part in workflows.split(",")]
        if not isinstance(workflows, (list, tuple)) or not workflows:
            raise _invalid("workflows must be a non-empty list of workflow names")
        if len(workflows) > MAX_SCOPE:
            raise _invalid(f"at most {MAX_SCOPE} workflows per key")
        names = []
        for item in workflows:
            if not isinstance(item, str) or not 1 <= len(item) <= WORKFLOW_NAME_MAX or "\x00" in item:
                raise _invalid("each workflow is a name of 1 to 100 characters")
            if item not in names:
                names.append(item)
        return tuple(names)

    def _audit(self, event_type: str, action: str, row: ApiKeyRecord, actor, extra: dict | None = None) -> None:
        from flowker.catalog.executors import audit

        audit(
            event_type,
            action,
            RESOURCE_TYPE,
            row.name,
            actor,
            {
                "name": row.name,
                "role": row.role,
                "workflows": row.workflows,
                "expiresAt": iso(row.expires_at),
                **(extra or {}),
            },
            audit_log=self.audit_log,
        )
