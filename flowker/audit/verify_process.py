"""Running a verification in a child process, for the API.

A verification is seconds of Python work per million entries. Inside a gunicorn worker it
would hold the worker's GIL most of that time, so the requests its other threads serve wait
(a convoy: each database round trip of theirs hands the GIL back to the verification for up
to the switch interval), and whatever memory it touched stays with the worker. In a child
process neither happens: the child has its own GIL, and its memory goes back to the system
when it exits. The child comes from a ``forkserver`` (a clean process started once, with
only this module preloaded), never a fork of the threaded worker itself.

An in-memory SQLite database cannot be opened from another process: it is verified in the
calling thread.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from flowker.audit.verify import VerifyResult
from flowker.errors import AuditChainError, FlowkerError

CHILD_TIMEOUT_SECONDS = 3600.0
CHILD_NICENESS = 10
_PRELOAD = ["flowker.audit.verify_process"]  # never "__main__" (flowker's would run the CLI)


def _verify(settings, target: int) -> VerifyResult:
    from flowker.audit.chain import AuditLog
    from flowker.storage.database import close_database, open_database

    database = open_database(settings.database_url)
    try:
        return AuditLog.from_settings(settings, database).verify(target)
    finally:
        close_database(database)


def _child(connection, settings, target: int) -> None:
    try:
        # Below the workers serving requests: on a busy host they get the CPU first.
        os.nice(CHILD_NICENESS)
    except OSError:
        pass
    try:
        outcome: tuple[str, Any] = ("ok", _verify(settings, target))
    except FlowkerError as exc:
        outcome = (
            "flowker",
            (type(exc).__module__, type(exc).__qualname__, exc.message, exc.code, exc.title, exc.http_status),
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        outcome = ("other", f"{type(exc).__name__}: {exc}"[:1000])
    try:
        connection.send(outcome)
    finally:
        connection.close()


def _rebuild(details) -> FlowkerError:
    module, name, message, code, title, status = details
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
        error = cls(message, code=code, title=title)
    except Exception:  # noqa: BLE001 - a class with another signature: the base carries it
        error = FlowkerError(message, code=code, title=title)
        error.http_status = status
    return error


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # takes effect when the server first starts
    return context


def verify_isolated(settings, target: int, database=None) -> VerifyResult:
    """``AuditLog.from_settings(settings).verify(target)``, run in a child process."""
    where = str(getattr(database, "database", "") or settings.database_url)
    if ":memory:" in where or "mode=memory" in where:
        return _verify_here(settings, target, database)
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, settings, target), name="flowker-audit-verify", daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(CHILD_TIMEOUT_SECONDS):
            raise AuditChainError("the audit chain verification did not finish in time")
        try:
            kind, value = receiver.recv()
        except EOFError:
            raise AuditChainError("the audit chain verification process ended without a result") from None
    finally:
        receiver.close()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)
    if kind == "ok":
        return value
    if kind == "flowker":
        raise _rebuild(value)
    raise AuditChainError(f"the audit chain verification failed: {value}")


def _verify_here(settings, target: int, database) -> VerifyResult:
    from flowker.audit.chain import AuditLog

    return AuditLog.from_settings(settings, database).verify(target)
