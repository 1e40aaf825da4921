"""Executors at run time: one client (session + breaker) per executor version, auth reused.

:class:`ExecutorPool` belongs to the execution service (one per process). For each
executor step it reads the Executor row (so a new version, or a disabled executor, is
seen at once), reuses the :class:`ExecutorClient` of that (id, version) and its hardened
session, resolves the auth config's secret references at call time (``$env``, ``$file``,
``$encrypted``) and reuses the ``requests`` auth built from them as long as the resolved
values stay the same (token caching lives in the auth types and the shared TokenCache).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from flowker.auth.base import AuthContext
from flowker.auth.resolution import AuthResolution, Credentials
from flowker.errors import UnprocessableEntity
from flowker.runner.breakers import BreakerBoard
from flowker.runner.executor_client import ExecutorClient, ExecutorDefinition, RetryPolicy
from flowker.storage.lookups import executor_heads
from flowker.storage.models import Executor
from flowker.tracing import NO_TRACING
from flowker.error_codes import ErrorCode

MAX_CLIENTS = 256


class _Entry:
    def __init__(self, client: ExecutorClient):
        self.client = client
        self.lock = threading.Lock()
        self.credentials: Credentials | None = None


class ExecutorPool:
    def __init__(
        self,
        settings,
        registry,
        redactor,
        breakers: BreakerBoard,
        *,
        token_cache=None,
        max_clients: int = MAX_CLIENTS,
        tracing=NO_TRACING,
    ):
        self.settings = settings
        self.registry = registry
        self.redactor = redactor
        self.breakers = breakers
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.token_cache = token_cache
        self.tracing = tracing
        self._max = max_clients
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._policy = None
        self._secret_box = None
        self._secret_box_loaded = False
        # (definition, session) -> the session to use: `flowker run --record` wraps each
        # executor's transport to keep its answers (flowker.runner.workflow_tests.recording).
        self.wrap_session: Callable[[ExecutorDefinition, Any], Any] | None = None
        # Resolves (registering every secret with the redactor), validates and builds
        # auths; its secret resolvers are built from the settings once, not per call.
        self.auth_resolution = AuthResolution(settings, registry, redactor, secret_box=self._box)

    # -- lookups ----------------------------------------------------------------------

    def resolve(self, reference: str) -> tuple[ExecutorClient, Any]:
        """The client and auth for an executor name (or id); raises FlowkerError."""
        executor_id, name, version, status = self._lookup(reference)
        if status != "active":
            raise UnprocessableEntity(f"executor {name!r} is {status}", code=ErrorCode.EXECUTOR_DISABLED)
        entry = self._entry(executor_id, version)
        return entry.client, self._auth(entry)

    @staticmethod
    def _lookup(reference: str) -> tuple:
        """(id, name, version, status) by name, else by id: one small query per step, so a
        new version or a disabled executor is seen at once without reading the spec."""
        rows = executor_heads(reference)
        if not rows:
            raise UnprocessableEntity(
                f"executor {reference!r} does not exist", code=ErrorCode.EXECUTOR_REFERENCE_UNKNOWN
            )
        return next((row for row in rows if row[1] == reference), rows[0])

    def _entry(self, executor_id: str, version: int) -> _Entry:
        key = (executor_id, version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        row = Executor.get_by_id(executor_id)
        key = (row.id, row.version)  # the row read now is the version this client serves
        definition = ExecutorDefinition.from_row(row)
        client = ExecutorClient(
            definition,
            self._new_session(definition),
            self.breakers.get(definition.id, definition.name),
            self.retry_policy,
            redact_url=self.redactor.redact_url,
            scrub_text=self.redactor.scrub_text,
            tracing=self.tracing,
        )
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:  # another thread built it first
                client.close()
                return existing
            entry = self._entries[key] = _Entry(client)
            # Older versions of this executor and the least recently used clients go.
            for old_key in [k for k in self._entries if k[0] == row.id and k != key]:
                self._entries.pop(old_key).client.close()
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)[1].client.close()
            return entry

    def _new_session(self, definition: ExecutorDefinition):
        from flowker.security.http import new_session

        from flowker.security.redaction import SECRET_HEADER_NAMES

        # The headers the auth type declares it sets: dropped on a redirect to another
        # origin, masked in logs and step records.
        auth_type = self.registry.auth_types.get(definition.authentication.type)
        declared = auth_type.credential_headers(definition.authentication.config) if auth_type is not None else ()
        extra_headers = [name for name in declared if name.lower() not in SECRET_HEADER_NAMES]
        for name in extra_headers:
            self.redactor.add_secret_header(name)
        session = new_session(self.address_policy, secret_headers=extra_headers)
        return session if self.wrap_session is None else self.wrap_session(definition, session)

    @property
    def address_policy(self):
        if self._policy is None:
            from flowker.security.ssrf import AddressPolicy

            self._policy = AddressPolicy.from_settings(self.settings)
        return self._policy

    # -- auth -------------------------------------------------------------------------

    def _auth(self, entry: _Entry) -> Any:
        auth_type, resolved = self.auth_resolution.resolve(entry.client.definition.authentication)
        with entry.lock:
            # Built (and checked against the type's schema) only when the resolved values change.
            entry.credentials = self.auth_resolution.credentials(
                auth_type, resolved, self._auth_context, reuse=entry.credentials
            )
            return entry.credentials.auth

    def _box(self):
        # Loaded only when a literal (encrypted) secret is met: in development this may
        # create the key file next to the SQLite database.
        if not self._secret_box_loaded:
            from flowker.security.secrets import SecretBox

            self._secret_box = SecretBox.from_settings(self.settings)
            self._secret_box_loaded = True
        return self._secret_box

    def _auth_context(self) -> AuthContext:
        from flowker.security.http import new_session

        policy = self.address_policy
        return AuthContext(
            settings=self.settings,
            new_session=lambda: new_session(policy),
            register_secret=self.redactor.add_secret,
            token_cache=self.token_cache,
            redactor=self.redactor,
        )

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            entry.client.close()
