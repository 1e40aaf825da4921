"""Log redaction: every log record of the process scrubbed by the registered redactors.

:func:`install_log_redaction` puts one :class:`RedactingRecordFactory` in front of the
logging machinery (the record factory, so records of every logger - urllib3,
requests-oauthlib, peewee - are covered whatever handlers exist); :class:`RedactingFilter`
does the same for one handler. Re-exported by :mod:`flowker.security.redaction`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from flowker.security.redaction import Redactor


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message, args and exception text.

    The message is formatted once (``msg % args``), scrubbed, and stored with ``args``
    cleared, so no later formatter can re-insert a secret. Attach it to handlers (a
    filter on a logger does not see records propagated from child loggers) or use
    :func:`install_log_redaction`, which covers every logger.
    """

    def __init__(self, redactor: Redactor, name: str = ""):
        super().__init__(name)
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record, self.redactor)
        return True


def scrub_record(record: logging.LogRecord, redactor: Redactor | RedactingRecordFactory) -> logging.LogRecord:
    """Scrub a record's message, exception and stack text in place (once per record).

    A message that needs scrubbing is stored formatted, with ``args`` cleared, so no later
    formatter can re-insert a secret; one that needs none is left exactly as it was.
    """
    if getattr(record, "_flowker_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the log line, nor leak args
        message = f"{record.msg!s} (unformattable log arguments)"
        record.msg, record.args = message, None
    scrubbed = redactor.scrub_text(message)
    if scrubbed != message:
        record.msg = scrubbed
        record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redactor.scrub_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.scrub_text(record.stack_info)
    record._flowker_redacted = True
    return record


class RedactingRecordFactory:
    """The process's log record factory while redactors are installed: every record any
    logger creates is scrubbed by each of them (:func:`install_log_redaction`).

    Redactors are held weakly: an execution service (or a test's app) that is gone stops
    costing anything. One factory serves every installed redactor, so installing many
    never stacks factories.
    """

    def __init__(self, previous: Callable[..., logging.LogRecord]):
        self.previous = previous
        self._lock = threading.Lock()
        self._redactors: "weakref.WeakSet[Redactor]" = weakref.WeakSet()
        # What every record reads: weak references, rebuilt on add and remove (iterating
        # the WeakSet under its guard cost more than the scrubbing of a cached line).
        self.snapshot: tuple[weakref.ref, ...] = ()

    def add(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)
            self.snapshot = tuple(weakref.ref(item) for item in self._redactors)

    def remove(self, redactor: Redactor) -> bool:
        """Forget ``redactor``; True when none is left."""
        with self._lock:
            self._redactors.discard(redactor)
            self.snapshot = tuple(weakref.ref(item) for item in self._redactors)
            return len(self._redactors) == 0

    def redactors(self) -> list[Redactor]:
        found = [reference() for reference in self.snapshot]
        return [redactor for redactor in found if redactor is not None]

    def scrub_text(self, text: Any) -> Any:
        for redactor in self.redactors():
            text = redactor.scrub_text(text)
        return text

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        redactors = self.redactors()
        if len(redactors) == 1:
            scrub_record(record, redactors[0])
        elif redactors:
            scrub_record(record, self)
        return record


_install_lock = threading.Lock()


def install_log_redaction(redactor: Redactor) -> Callable[[], None]:
    """Scrub every log record of the process with ``redactor``; returns an uninstaller.

    Uses the standard logging record factory, so records from every logger (urllib3,
    requests-oauthlib, peewee, pytest's capture) are covered whatever handlers exist.
    Idempotent per redactor; several redactors share one factory. The redactor is held
    weakly, so a forgotten uninstall does not keep it (or its secrets) alive.
    """
    with _install_lock:
        factory = logging.getLogRecordFactory()
        if not isinstance(factory, RedactingRecordFactory):
            factory = RedactingRecordFactory(factory)
            logging.setLogRecordFactory(factory)
        factory.add(redactor)

    def uninstall() -> None:
        with _install_lock:
            if factory.remove(redactor) and logging.getLogRecordFactory() is factory:
                logging.setLogRecordFactory(factory.previous)

    return uninstall
