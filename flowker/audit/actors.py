"""Who an audit entry names: a principal, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_IP = "0.0.0.0"


@dataclass(frozen=True)
class Actor:
    """Who did it. ``id`` is a key's name or fingerprint, never a key."""

    type: str
    id: str
    ip: str | None = None
    # The request that acted (X-Request-ID), stored as the entry's metadata ``requestId``.
    request_id: str | None = None


SYSTEM_ACTOR = Actor(type="system", id="flowker", ip=UNKNOWN_IP)
