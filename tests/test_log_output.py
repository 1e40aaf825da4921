"""Unit tests of flowker.observability.log_output: log lines written in batches, in order,
at most a bounded time late, at once for warnings, and never twice across a fork."""

from __future__ import annotations

import io
import logging
import os
import time

from flowker.observability.log_output import BatchingStreamHandler


class CountingStream(io.StringIO):
    """A stream that counts its writes (each a system call on a real stream)."""

    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_info_lines_are_written_together_in_order_within_the_flush_interval():
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, flush_seconds=0.05)
    logger = logger_with(handler, "flowker.test.batching")
    try:
        for number in range(100):
            logger.info("line %d", number)
        assert wait_for(lambda: stream.getvalue().count("\n") == 100)
        assert stream.getvalue().splitlines() == [f"line {number}" for number in range(100)]
        assert stream.writes < 10  # one write per batch, not one per line
    finally:
        handler.close()


def test_a_warning_is_written_at_once_with_every_line_before_it():
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, flush_seconds=60.0)  # the timer never fires in this test
    logger = logger_with(handler, "flowker.test.batching.warning")
    try:
        logger.info("first")
        logger.info("second")
        assert stream.getvalue() == ""
        logger.warning("trouble")
        assert stream.getvalue().splitlines() == ["first", "second", "trouble"]
    finally:
        handler.close()


def test_flush_and_close_write_what_is_waiting():
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, flush_seconds=60.0)
    logger = logger_with(handler, "flowker.test.batching.close")
    logger.info("before flush")
    handler.flush()
    assert stream.getvalue() == "before flush\n"
    logger.info("before close")
    handler.close()
    assert stream.getvalue() == "before flush\nbefore close\n"


def test_the_flusher_finding_nothing_waiting_on_a_closed_stream_does_not_fail(tmp_path):
    stream = open(tmp_path / "log", "w")  # noqa: SIM115 - closed below, as the test needs
    handler = BatchingStreamHandler(stream, flush_seconds=60.0)
    stream.close()  # as pytest closes the stderr it captured, before the flusher's last turn
    handler.flush()


def test_a_forked_child_does_not_write_its_parents_lines_again(tmp_path):
    path = tmp_path / "lines.log"
    with open(path, "w", buffering=1) as stream:
        handler = BatchingStreamHandler(stream, flush_seconds=60.0)
        logger = logger_with(handler, "flowker.test.batching.fork")
        logger.info("parent before fork")
        pid = os.fork()
        if pid == 0:  # the child: one line of its own, then out (without the parent's atexit)
            try:
                logger.info("child")
                handler.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        handler.close()
    lines = path.read_text().splitlines()
    assert sorted(lines) == ["child", "parent before fork"]
