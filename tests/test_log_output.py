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


def test_a_busy_stream_is_written_on_schedule_without_waking_the_flusher_per_batch():
    """While lines keep coming the flusher writes every interval on its own; only after an
    interval with nothing to write does it wait for the next line to wake it."""
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, flush_seconds=0.05)
    logger = logger_with(handler, "flowker.test.busy")
    wakes = []
    try:
        logger.info("first")
        wake = handler._wake
        original_set = wake.set
        wake.set = lambda: (wakes.append(time.monotonic()), original_set())  # type: ignore[method-assign]
        busy_until = time.monotonic() + 0.4
        number = 0
        while time.monotonic() < busy_until:  # a line every 5 ms: never a whole quiet interval
            number += 1
            logger.info("busy %d", number)
            time.sleep(0.005)
        assert wait_for(lambda: stream.getvalue().count("\n") == number + 1)
        writes = stream.writes
        assert writes >= 4  # written as it went, about every 50 ms, not at the end
        # Each batch used to wake the flusher; now none does unless this test's thread
        # stalled for a whole interval (a loaded machine), which lets it park once or so.
        assert len(wakes) < writes / 2, (wakes, writes)
        assert wait_for(lambda: handler._parked)  # quiet: it waits to be woken
        before = len(wakes)
        logger.info("after a pause")
        assert len(wakes) == before + 1
        assert wait_for(lambda: stream.getvalue().endswith("after a pause\n"))
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


def test_a_lines_scrubber_follows_the_redactors_installed_and_gone():
    """JSON lines look the installed redactor up once while it stays the same one: a second
    installed, one uninstalled or one garbage-collected is seen at the next line."""
    import gc

    from flowker.observability.logs import JsonFormatter
    from flowker.security.log_redaction import install_log_redaction
    from flowker.security.redaction import Redactor

    scrubber = JsonFormatter().scrubber
    first, second = Redactor(), Redactor()
    first.add_secret("alpha-secret-0123")
    second.add_secret("beta-secret-4567")
    line = "alpha-secret-0123 beta-secret-4567"
    uninstall_first = install_log_redaction(first)
    try:
        for _ in range(2):  # worked out, then from what was kept
            assert scrubber.for_line()(line) == "**** beta-secret-4567"
        uninstall_second = install_log_redaction(second)
        assert scrubber.for_line()(line) == "**** ****"
        uninstall_second()
        for _ in range(2):
            assert scrubber.for_line()(line) == "**** beta-secret-4567"
    finally:
        uninstall_first()
    assert scrubber.for_line()(line) == line
    passing = Redactor()
    passing.add_secret("gamma-secret-8901")
    uninstall_passing = install_log_redaction(passing)
    assert scrubber.for_line()("gamma-secret-8901") == "****"
    del passing, uninstall_passing  # the uninstaller holds its redactor too
    gc.collect()
    assert scrubber.for_line()("gamma-secret-8901") == "gamma-secret-8901"
