"""One verification at a time per process, and reuse of a result for an unchanged chain.

A verification reads the whole chain: seconds of work for a long one. Several at once in
one worker multiply its memory and starve the other requests the worker serves, so the
API runs them one at a time: a request that finds one running is refused with 429 and a
``Retry-After`` estimated from the last run (it does not queue: a queue of full-chain
reads would only delay the answer it gives the client, and hold a thread meanwhile).

A result is reused for :data:`REUSE_SECONDS` while the chain's head (sequence and hash)
and its checkpoints (count, newest sequence) are unchanged, for the same target entry.
An insider could edit an old entry inside that window without it showing until the next
full run; the window is short and each run is complete.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import peewee

from flowker.audit import store
from flowker.audit.verify import VerifyResult
from flowker.error_codes import ErrorCode
from flowker.errors import TooManyRequests
from flowker.storage.database import connection

REUSE_SECONDS = 60.0


def chain_state(database: peewee.Database) -> tuple:
    """What a reused result must still match: head (sequence, hash), checkpoints (count, newest)."""
    with connection(database):
        head = store.head(database)
        checkpoints = database.execute_sql(f"SELECT COUNT(*), MAX(sequence) FROM {store.CHECKPOINT_TABLE}").fetchone()
    return (tuple(head) if head else None, tuple(checkpoints) if checkpoints else None)


class VerifyGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._started = 0.0
        self._last_seconds = 1.0
        self._reusable: tuple[tuple, float, VerifyResult] | None = None  # (key, when, result)

    def run(self, database: peewee.Database, target: int, verify: Callable[[], VerifyResult]) -> VerifyResult:
        key = (target, chain_state(database))
        reusable = self._reusable
        if reusable is not None and reusable[0] == key and self._clock() - reusable[1] < REUSE_SECONDS:
            return reusable[2]
        if not self._lock.acquire(blocking=False):
            remaining = self._last_seconds - (self._clock() - self._started)
            error = TooManyRequests(
                "another audit chain verification is running in this process: retry later",
                code=ErrorCode.AUDIT_VERIFY_BUSY,
            )
            error.headers = {"Retry-After": str(max(1, math.ceil(remaining)))}
            raise error
        try:
            self._started = self._clock()
            result = verify()
            self._last_seconds = self._clock() - self._started
            # Keyed by the state read before the run: an append meanwhile changes the key.
            self._reusable = (key, self._clock(), result)
            return result
        finally:
            self._lock.release()
