"""The direct way of :func:`flowker.observability.logs.log_line` (no LogRecord) must write,
byte for byte, the line the record way writes (``JsonFormatter.format``), for every field
combination and kind of value, and scrub alike: every value but a SafeField through the
installed redactors."""

from __future__ import annotations

import contextlib
import enum
import io
import itertools
import json
import logging
import random
import time

import pytest

from flowker.observability.log_output import BatchingStreamHandler
from flowker.observability.logs import FIELDS, JsonFormatter, SafeField, _direct_handler, log_line
from flowker.security.redaction import Redactor, install_log_redaction

SECRET = "s3cr3t-value-0123456789"


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    """A str subclass that is not a SafeField: scrubbed like any string."""


class _Shown:
    def __str__(self) -> str:
        return f"shown {SECRET} ü"


VALUES = [
    SafeField("/v1/workflows/{workflow_id}"),
    SafeField('quote " and \\ ü'),
    "plain",
    f"with {SECRET} inside",
    "https://user:hunter2-pass@example.com/x?api_key=abc123456",
    "non-ASCII é 日本 \u2028 \U0001f600 \x00\n\t",
    "",
    _Text(f"subclass {SECRET}"),
    0,
    -17,
    201,
    2**70,
    _Level.HIGH,
    True,
    False,
    None,
    1.5,
    2.345,
    1e-7,
    1e22,
    float("nan"),
    float("inf"),
    -float("inf"),
    ["list", SECRET, 1],
    {"nested": "dict"},
    _Shown(),
]

MESSAGES = [
    ('"%s %s" %d', (SafeField("POST"), "/v1/workflows/{id}/executions", 201)),
    ("execution of workflow %s %s", ("order-flow", "completed")),
    ("call %s ü", (SECRET,)),
    ("plain message, no args", ()),
    ("https://user:hunter2-pass@example.com/x", ()),
    ("100% sure", ()),
]


def _field_sets() -> list[dict]:
    """Each field alone with each value; then random subsets, in random key order, with
    random values (seeded: the same matrix every run)."""
    sets = [{name: value} for name, value in itertools.product(FIELDS, VALUES)]
    sets.append({})
    sets.append({name: None for name in FIELDS})
    sets.append({"not_a_field": SECRET, "method": SafeField("GET")})  # unknown names: left out
    chooser = random.Random(20261207)
    for _ in range(300):
        names = chooser.sample(FIELDS, chooser.randint(1, len(FIELDS)))
        sets.append({name: chooser.choice(VALUES) for name in names})
    return sets


@contextlib.contextmanager
def _two_ways(monkeypatch):
    """Two loggers at INFO: one reaching a handler alone (the direct way), one whose handler
    has a filter (the record way); the clock stopped, so whole lines compare. Made in the
    test itself: pytest's log capture joins loggers that do not propagate at each phase."""
    monkeypatch.setattr(time, "time", lambda: 1765081834.9661)
    streams = io.StringIO(), io.StringIO()
    handlers = BatchingStreamHandler(streams[0], 60.0), BatchingStreamHandler(streams[1], 60.0)
    handlers[1].addFilter(lambda made: True)
    loggers = []
    for name, handler in zip(("flowker.test.bytes.direct", "flowker.test.bytes.record"), handlers):
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate, logger.level = False, logging.INFO
        loggers.append(logger)
    try:
        yield loggers, handlers, streams
    finally:
        for logger, handler in zip(loggers, handlers):
            logger.removeHandler(handler)
            logger.propagate = True


def _lines(handler: BatchingStreamHandler, stream: io.StringIO, name: str) -> list[str]:
    handler.flush()
    # split at "\n" alone: a line may hold U+2028, which splitlines() would also split at
    return stream.getvalue().replace(f'"{name}"', '"LOGGER"').split("\n")[:-1]


@pytest.mark.parametrize("redactors", [0, 1, 2])
def test_the_direct_way_writes_the_record_ways_bytes_for_every_field_combination(monkeypatch, redactors):
    uninstalls = []
    for _ in range(redactors):
        redactor = Redactor()
        redactor.add_secret(SECRET)
        uninstalls.append(install_log_redaction(redactor))
    try:
        with _two_ways(monkeypatch) as (loggers, handlers, streams):
            assert _direct_handler(loggers[0], logging.INFO) is handlers[0]
            assert _direct_handler(loggers[1], logging.INFO) is None
            for number, fields in enumerate(_field_sets()):
                message, args = MESSAGES[number % len(MESSAGES)]
                level = logging.WARNING if number % 7 == 0 else logging.INFO
                for logger in loggers:
                    log_line(logger, level, message, args, dict(fields))
            direct = _lines(handlers[0], streams[0], loggers[0].name)
            through_record = _lines(handlers[1], streams[1], loggers[1].name)
    finally:
        for uninstall in uninstalls:
            uninstall()
    assert len(direct) == len(_field_sets())
    assert direct == through_record
    text = "\n".join(direct)
    assert "hunter2-pass" not in text and "abc123456" not in text
    # A SafeField is written as it is; a secret elsewhere is masked by a redactor that knows it.
    assert 'quote \\" and \\\\ ü' in text
    assert (f"with {SECRET} inside" in text) is (redactors == 0)
    assert (f"subclass {SECRET}" in text) is (redactors == 0)
    for line in direct:
        json.loads(line)  # NaN and Infinity as Python's json writes and reads them


def test_the_line_is_what_the_json_encoder_writes_for_the_fields_in_fields_order(monkeypatch):
    fields = {"workflow": "w ü", "duration_ms": 2.5, "status": "completed", "execution_id": SafeField("e-1")}
    with _two_ways(monkeypatch) as (loggers, handlers, streams):
        log_line(loggers[0], logging.INFO, "execution of workflow %s %s", ("w ü", "completed"), fields)
        (line,) = _lines(handlers[0], streams[0], loggers[0].name)
    expected = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1765081834)) + ".966Z",
        "level": "INFO",
        "logger": "LOGGER",
        "message": "execution of workflow w ü completed",
        "pid": json.loads(line)["pid"],
        "status": "completed",
        "duration_ms": 2.5,
        "execution_id": "e-1",
        "workflow": "w ü",
    }
    assert line == json.JSONEncoder(ensure_ascii=False).encode(expected)


def test_a_broken_format_takes_the_record_way_and_says_so_scrubbed(monkeypatch):
    redactor = Redactor()
    redactor.add_secret(SECRET)
    uninstall = install_log_redaction(redactor)
    try:
        with _two_ways(monkeypatch) as (loggers, handlers, streams):
            for logger in loggers:
                log_line(logger, logging.INFO, "two %s %s", (SECRET,), {"principal": SECRET})
            direct = _lines(handlers[0], streams[0], loggers[0].name)
            through_record = _lines(handlers[1], streams[1], loggers[1].name)
    finally:
        uninstall()
    assert direct == through_record and len(direct) == 1
    assert SECRET not in direct[0] and "unformattable" in direct[0]
