"""Probes (no API key): ``/health``, ``/health/live``, ``/health/ready``; and ``/version``
(which needs a key, like every route but the probes).

Readiness is 503 while the database does not answer or while the process drains
(SIGTERM: ``app.state.draining``), so a load balancer stops sending new work.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time

import falcon

from flowker import __version__
from flowker.api.views import iso

logger = logging.getLogger("flowker.api.health")


def _now() -> str:
    now = iso(_dt.datetime.now(_dt.timezone.utc))
    assert now is not None  # iso maps only None to None
    return now


def check_database(database) -> dict:
    """``{status: up|down, latencyMs, message}`` from a ``SELECT 1`` on a fresh or pooled connection."""
    started = time.perf_counter()
    opened = False
    try:
        opened = database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1").fetchone()
        return {
            "status": "up",
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "message": "database reachable",
        }
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; details to the log only
        logger.warning("database health check failed: %s", type(exc).__name__)
        return {
            "status": "down",
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "message": f"database unreachable ({type(exc).__name__})",
        }
    finally:
        if opened and not database.is_closed():
            database.close()


class _Probe:
    uses_database = False  # the probes open (and close) their own connection

    def __init__(self, state):
        self.state = state


class Health(_Probe):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        database = check_database(self.state.database)
        healthy = database["status"] == "up"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {
            "status": "healthy" if healthy else "unhealthy",
            "version": __version__,
            "uptimeSeconds": round(time.monotonic() - self.state.started_monotonic, 3),
            "timestamp": _now(),
            "checks": {"database": database},
        }


class Live(_Probe):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "alive", "timestamp": _now()}


class Ready(_Probe):
    """``/health/ready``: ``ready``; ``not_ready`` (database down) or ``draining`` with 503."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.state.is_draining:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "draining", "timestamp": _now(), "version": __version__, "checks": {}}
            return
        database = check_database(self.state.database)
        ready = database["status"] == "up"
        status = "ready" if ready else "not_ready"
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": status, "timestamp": _now(), "version": __version__, "checks": {"database": database}}


class Version(_Probe):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"version": __version__, "requestDate": _now()}
