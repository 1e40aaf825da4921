"""Log lines: JSON or text (``FLOWKER_LOG_FORMAT``), at ``FLOWKER_LOG_LEVEL``, every one scrubbed.

Flowker writes three kinds of lines of its own, each with named fields a formatter writes
after the message (``logger.info(..., extra={...})``):

* ``flowker.access``: one per request (method, route template, status, duration in ms,
  request id, principal);
* ``flowker.executions``: one per execution end (execution id, workflow, status,
  duration) and one per failed step (node, error code, attempts).

Every line goes through the redactor: the record factory installed by
:func:`flowker.security.redaction.install_log_redaction` scrubs messages when records are
made; the formatters here scrub again what is added after that (the ``extra`` fields, and
records made before any redactor was installed), with the installed redactors or, when
none is, a redactor that knows no secret but still masks credential-looking text.

``flowker serve`` hands :func:`logconfig` to gunicorn, so its own error log and the
workers' lines share one format and one stream (stderr), written in batches
(:mod:`flowker.observability.log_output`: at most 1 s late, WARNING and worse at once).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

from flowker.observability.log_output import BatchingStreamHandler
from flowker.security.log_redaction import RedactingRecordFactory, scrub_record
from flowker.security.redaction import Redactor

ACCESS_LOGGER = "flowker.access"
EXECUTION_LOGGER = "flowker.executions"

# The named fields a record may carry (``extra=``), in the order lines show them.
FIELDS = (
    "method",
    "route",
    "status",
    "duration_ms",
    "request_id",
    "principal",
    "execution_id",
    "workflow",
    "node",
    "node_type",
    "error_code",
    "attempts",
)


class SafeField(str):
    """A field value that holds no secret by construction - a route template, a standard
    HTTP method, an id Flowker generated - so the formatters write it unscrubbed (a unique
    id would otherwise cost a full scrub per line and push useful entries out of the
    redactor's cache). Anything a client or a workflow author chose is never one."""

    __slots__ = ()


# What an access line's text message already says (the rest follow as name=value).
_ACCESS_MESSAGE_FIELDS = frozenset({"method", "route", "status"})


class _LineScrubber:
    """The process's installed redactors, else one that masks credential-looking text."""

    def __init__(self):
        self._fallback = Redactor()

    def for_line(self) -> Callable[[str], str]:
        """The scrubbing function for one line (the installed redactors, looked up once)."""
        return self.for_factory(logging.getLogRecordFactory())

    def for_factory(self, factory: Callable[..., logging.LogRecord]) -> Callable[[str], str]:
        """:meth:`for_line` with the record factory already read (the direct way reads it)."""
        if not isinstance(factory, RedactingRecordFactory):
            return self._fallback.scrub_text
        snapshot = factory.snapshot
        if len(snapshot) == 1:  # the usual case: one redactor, read without building lists
            redactor = snapshot[0]()
            return redactor.scrub_text if redactor is not None else self._fallback.scrub_text
        redactors = factory.redactors()
        if not redactors:
            return self._fallback.scrub_text
        if len(redactors) == 1:
            return redactors[0].scrub_text

        def scrub(text: str) -> str:
            for redactor in redactors:
                text = redactor.scrub_text(text)
            return text

        return scrub


class _Scrub:
    """``scrub_text`` for :func:`scrub_record`."""

    def __init__(self, scrub: Callable[[str], str]):
        self.scrub_text = scrub


_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder, not one per line (json.dumps)
# What _JSON writes for a string (json's C function when there is one): lines are joined
# from pieces rather than encoded from a dict - the same bytes at a third of the work.
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_INFINITY = float("inf")


def _json_value(value: Any) -> str:
    """``_JSON.encode(value)`` for one value, the common kinds without the encoder."""
    kind = type(value)
    if kind is str or kind is SafeField:
        return _json_string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and value == value and value not in (_INFINITY, -_INFINITY):
        return float.__repr__(value)
    return _JSON.encode(value)


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """A field's value as a line shows it: a SafeField as it is (a plain str), any other
    string through the redactors, anything else unchanged."""
    if type(value) is SafeField:
        return str(value)
    return scrub(value) if isinstance(value, str) else value


# A set of field names (a dict's keys, in the caller's order) -> the FIELDS among them, in
# FIELDS order, each with the text put before its value. A line's fields are then visited
# without looking up the FIELDS it does not have; a few shapes recur (one per call site).
_field_orders: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_MAX_KEPT = 256  # entries in each of the caches below


def _field_order(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Worked out and kept (read as ``_field_orders.get(names) or _field_order(names)``: a
    call fewer per line)."""
    order = tuple((field, f', "{field}": ') for field in FIELDS if field in names)
    if len(_field_orders) >= _MAX_KEPT:  # names a program made up: forget, do not grow
        _field_orders.clear()
    _field_orders[names] = order
    return order


_LEVELS_AND_LOGGERS: dict[tuple[str, str], str] = {}  # (level, logger name) -> '"INFO", "logger": "flowker.access"'


def _level_and_logger(levelname: str, name: str) -> str:
    """A line's level and logger, as JSON writes them, kept (the pairs in use are few)."""
    text = f'{_json_string(levelname)}, "logger": {_json_string(name)}'
    if len(_LEVELS_AND_LOGGERS) >= _MAX_KEPT:  # a program naming loggers without end: forget, do not grow
        _LEVELS_AND_LOGGERS.clear()
    _LEVELS_AND_LOGGERS[(levelname, name)] = text
    return text


_last_second: tuple[int, str] = (-1, "")  # (whole seconds, their text), replaced as one object
_MILLISECONDS = tuple(f".{millis:03d}Z" for millis in range(1000))  # formatting one cost more than the rest


def _timestamp(created: float, msecs: float) -> str:
    """UTC, milliseconds: ``2026-12-07T04:30:34.966Z`` (the seconds formatted once per second)."""
    global _last_second
    whole = int(created)
    last = _last_second
    if last[0] != whole:
        last = _last_second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    millis = int(msecs)
    return last[1] + (_MILLISECONDS[millis] if 0 <= millis < 1000 else f".{millis:03d}Z")


class _ProcessId:
    """This process's id for the lines' ``pid``, kept: ``os.getpid()`` is a system call (about
    0.8 µs here), and a forked child (a gunicorn worker) renews it."""

    value = os.getpid()

    @classmethod
    def renew(cls) -> None:
        cls.value = os.getpid()


os.register_at_fork(after_in_child=_ProcessId.renew)


def log_line(logger: logging.Logger, level: int, message: str, args: tuple, fields: dict[str, Any]) -> None:
    """``logger.log(level, message, *args, extra=fields)`` without the caller lookup (a
    stack walk per line: Flowker's lines name their logger, never a source line).

    When the line would reach exactly one handler - Flowker's batching stream with the JSON
    formatter, nothing filtering on the way, the standard or the redacting record factory -
    it is formatted and queued without a ``LogRecord`` (same bytes, same scrubbing: the
    message and fields through the installed redactors). Otherwise the record is made by the
    process's record factory (scrubbed) and handled as any other."""
    if not logger.isEnabledFor(level):
        return
    factory = logging.getLogRecordFactory()
    handler = _direct_handler(logger, level, factory)
    if handler is not None:
        try:
            text = message % args if args else message
        except Exception:  # noqa: BLE001 - the record path says what went wrong, scrubbed
            handler = None
        if handler is not None:
            formatter = handler.formatter
            created = time.time()
            line = formatter.json_line(
                _timestamp(created, (created - int(created)) * 1000),
                logging.getLevelName(level),
                logger.name,
                text,
                _ProcessId.value,
                fields,
                formatter.scrubber.for_factory(factory),
            )
            handler.write_line(line, level)
            return
    logger.handle(logger.makeRecord(logger.name, level, "(flowker)", 0, message, args, None, None, fields))


def _direct_handler(logger: logging.Logger, level: int, factory: Any = None) -> Any:
    """The :class:`BatchingStreamHandler` a line at ``level`` reaches alone, or None when
    the record path is needed (filters, other handlers, another record factory...).

    Decided again for every line, not kept: handlers, levels and filters are plain
    attributes anyone (a test, a library) may change with no hook to tell."""
    if factory is None:
        factory = logging.getLogRecordFactory()
    if factory is not logging.LogRecord and not (
        type(factory) is RedactingRecordFactory and factory.previous is logging.LogRecord
    ):
        return None
    if logger.disabled or logger.filters or not logging.logProcesses:
        return None
    found = None
    current: Any = logger
    while current is not None:
        for handler in current.handlers:
            # A NullHandler writes nothing (flowker.executions keeps one so an unconfigured
            # process stays quiet): it must not send every execution line the record way.
            if level >= handler.level and type(handler) is not logging.NullHandler:
                if found is not None:
                    return None
                found = handler
        if not current.propagate:
            break
        current = current.parent
    # (Its terminator needs no check: write_line ends the line with it, as emit does.)
    if type(found) is not BatchingStreamHandler or found.filters or type(found.formatter) is not JsonFormatter:
        return None
    return found


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self):
        super().__init__()
        self.scrubber = _LineScrubber()

    def fields(self, values: dict[str, Any], scrub: Callable[[str], str]) -> dict[str, Any]:
        """The named fields among ``values`` (a record's ``__dict__``), in FIELDS order,
        strings scrubbed (they were added after the factory ran)."""
        found = {}
        names = tuple(values)
        for name, _ in _field_orders.get(names) or _field_order(names):
            value = values[name]
            if value is not None:
                found[name] = _scrubbed(value, scrub)
        return found

    def scrubbed(self, record: logging.LogRecord) -> tuple[logging.LogRecord, Callable[[str], str]]:
        """The record, scrubbed (a no-op for records the factory already did: they are
        marked), and the function that scrubs the rest of its line."""
        scrub = self.scrubber.for_line()
        return scrub_record(record, _Scrub(scrub)), scrub  # type: ignore[arg-type]


class JsonFormatter(_ScrubbingFormatter):
    """One JSON object per line: time, level, logger, message, the named fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        record, scrub = self.scrubbed(record)
        return self.json_line(
            _timestamp(record.created, record.msecs),
            record.levelname,
            record.name,
            record.getMessage(),
            record.process,
            record.__dict__,
            scrub,
            record.exc_text,
            record.stack_info,
            scrubbed=True,
        )

    def json_line(
        self,
        timestamp: str,
        levelname: str,
        name: str,
        message: str,
        pid: int | None,
        values: dict[str, Any],
        scrub: Callable[[str], str],
        exc_text: str | None = None,
        stack_info: str | None = None,
        *,
        scrubbed: bool = False,
    ) -> str:
        """The line; ``message`` is scrubbed here unless ``scrubbed`` (a record's was);
        ``timestamp`` is as :func:`_timestamp` writes it (nothing JSON would escape).

        The bytes are ``_JSON.encode`` of the dict {time, level, logger, message, pid (which
        gunicorn worker, or the master), the named fields, exception, stack}, written with
        as few Python operations as that takes: the direct way makes one per line."""
        line = (
            f'{{"time": "{timestamp}", '
            f'"level": {_LEVELS_AND_LOGGERS.get((levelname, name)) or _level_and_logger(levelname, name)}, '
            f'"message": {_json_string(message if scrubbed else scrub(message))}, '
            f'"pid": {pid if type(pid) is int else _json_value(pid)}'
        )
        # An f-string writes an int or a float as int.__repr__ and float.__repr__ do.
        names = tuple(values)
        for field, before in _field_orders.get(names) or _field_order(names):
            value = values[field]
            kind = type(value)  # the kinds lines carry first, each encoded as _JSON would
            if kind is SafeField:
                line += before + _json_string(value)
            elif kind is str:
                line += before + _json_string(scrub(value))
            elif kind is int or (kind is float and value - value == 0.0):  # finite (nan and inf are not)
                line += f"{before}{value}"
            elif value is not None:
                line += before + _json_value(_scrubbed(value, scrub))
        if exc_text:
            line += ', "exception": ' + _json_string(exc_text)
        if stack_info:
            line += ', "stack": ' + _json_string(stack_info)
        return line + "}"


class TextFormatter(_ScrubbingFormatter):
    """``TIME LEVEL LOGGER MESSAGE name=value...``, then the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        record, scrub = self.scrubbed(record)
        parts = [_timestamp(record.created, record.msecs), record.levelname, record.name, record.getMessage()]
        skip = _ACCESS_MESSAGE_FIELDS if record.name == ACCESS_LOGGER else frozenset()
        fields = self.fields(record.__dict__, scrub)
        parts += [f"{name}={_text_value(value)}" for name, value in fields.items() if name not in skip]
        line = " ".join(parts)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c.isspace() or c == '"' for c in text)) else text


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``json`` or ``text`` (also the ``()`` factory of the dictConfig below)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}")


def logconfig(settings) -> dict:
    """A :func:`logging.config.dictConfig` document: the root logger and gunicorn's error
    log on stderr in the settings' format and level; gunicorn's access log off (Flowker
    writes its own access line, with the route template and the principal)."""
    level = settings.log_level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"flowker": {"()": f"{__name__}.formatter", "log_format": settings.effective_log_format}},
        "handlers": {
            "flowker": {
                "class": "flowker.observability.log_output.BatchingStreamHandler",  # lines written in batches
                "formatter": "flowker",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["flowker"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["flowker"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def configure_logging(settings) -> None:
    """Apply :func:`logconfig` to this process (a command that logs without gunicorn)."""
    import logging.config

    logging.config.dictConfig(logconfig(settings))
