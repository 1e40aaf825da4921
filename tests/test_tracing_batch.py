"""flowker.tracing_batch.SpanBatch: the SDK batch processor's behaviour at one append per span.

Batches by size and by the schedule delay, everything on shutdown and flush, the oldest
dropped when the queue is full, unsampled spans never queued, and after a fork the child
exports its own spans from its own thread (the parent's queue is not the child's)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from flowker.tracing_batch import SpanBatch


class RecordingExporter:
    def __init__(self, *, fail: bool = False):
        self.batches: list[list] = []
        self.shut = False
        self.fail = fail
        self.exported = threading.Event()

    def export(self, batch):
        self.batches.append(list(batch))
        self.exported.set()
        if self.fail:
            raise RuntimeError("collector down")

    def shutdown(self):
        self.shut = True


class FakeSpan:
    def __init__(self, number: int, sampled: bool = True):
        self.number = number
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        self.context = SpanContext(1, number + 1, is_remote=False, trace_flags=flags)


def numbers(batches) -> list[list[int]]:
    return [[span.number for span in batch] for batch in batches]


def test_full_batches_go_at_once_oldest_first_and_the_rest_on_shutdown():
    exporter = RecordingExporter()
    batch = SpanBatch(exporter, {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"})
    for number in range(10):
        batch.add(FakeSpan(number))
    assert exporter.exported.wait(5)
    deadline = time.monotonic() + 5
    while len(exporter.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert numbers(exporter.batches) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # 8 and 9 wait for the timer
    batch.shutdown()
    assert numbers(exporter.batches)[-1] == [8, 9] and exporter.shut
    batch.shutdown()  # twice is harmless
    assert len(exporter.batches) == 3


def test_the_schedule_delay_sends_a_partial_batch():
    exporter = RecordingExporter()
    batch = SpanBatch(exporter, {"OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        batch.add(FakeSpan(1))
        assert exporter.exported.wait(5)
        assert numbers(exporter.batches) == [[1]]
    finally:
        batch.shutdown()


def test_unsampled_spans_are_not_queued_and_force_flush_exports_all():
    exporter = RecordingExporter()
    batch = SpanBatch(exporter, {"OTEL_BSP_SCHEDULE_DELAY": "600000"})
    try:
        batch.on_end(FakeSpan(1, sampled=False))
        batch.on_end(FakeSpan(2))
        assert batch.force_flush()
        assert numbers(exporter.batches) == [[2]]
    finally:
        batch.shutdown()
    assert not batch.force_flush()
    batch.on_end(FakeSpan(3))  # after shutdown: not queued
    assert numbers(exporter.batches) == [[2]]


def test_a_full_queue_drops_the_oldest_and_says_so(caplog):
    exporter = RecordingExporter()
    settings = {
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_BSP_MAX_QUEUE_SIZE": "3",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "9",
    }
    batch = SpanBatch(exporter, settings)
    with batch._export_lock:  # the export thread, woken by a full batch, waits for the five
        for number in range(5):
            batch.add(FakeSpan(number))
    batch.shutdown()
    assert numbers(exporter.batches) == [[2, 3, 4]]  # the batch size is capped at the queue's
    assert "span queue full (3)" in caplog.text


def test_a_failing_export_does_not_stop_the_thread(caplog):
    exporter = RecordingExporter(fail=True)
    batch = SpanBatch(exporter, {"OTEL_BSP_SCHEDULE_DELAY": "20"})
    try:
        batch.add(FakeSpan(1))
        assert exporter.exported.wait(5)
        exporter.exported.clear()
        batch.add(FakeSpan(2))
        assert exporter.exported.wait(5)
        assert numbers(exporter.batches) == [[1], [2]]
    finally:
        batch.shutdown()
    assert "exporting 1 spans failed" in caplog.text


@pytest.mark.parametrize(
    "settings",
    [{"OTEL_BSP_MAX_QUEUE_SIZE": "many"}, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"}],
)
def test_a_bad_setting_falls_back_to_the_default_with_a_warning(settings, caplog):
    batch = SpanBatch(RecordingExporter(), settings)
    try:
        assert (batch._max_queue_size, batch._batch_size) == (2048, 512)
        assert next(iter(settings)) in caplog.text
    finally:
        batch.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_exports_its_own_spans_from_its_own_thread(tmp_path):
    """The child's queue starts empty (the parent's spans are the parent's to export) and a
    new thread sends the child's spans when their batch is full."""
    out = tmp_path / "child.txt"

    class FileExporter(RecordingExporter):
        def export(self, batch):
            with open(out, "a") as handle:
                handle.write(f"{os.getpid()}:{[span.number for span in batch]}\n")

    exporter = FileExporter()
    batch = SpanBatch(exporter, {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"})
    batch.add(FakeSpan(100))  # queued in the parent, not exported yet
    pid = os.fork()
    if pid == 0:  # the child: two spans fill a batch, its thread must send them
        code = 1
        try:
            batch.add(FakeSpan(1))
            batch.add(FakeSpan(2))
            deadline = time.monotonic() + 5
            # The line whole, not the file only created: the export thread may be mid-write.
            while time.monotonic() < deadline and not (out.exists() and out.read_text().endswith("\n")):
                time.sleep(0.01)
            code = 0 if out.exists() and out.read_text().endswith("\n") else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_text() == f"{pid}:[1, 2]\n"
    batch.shutdown()
    assert out.read_text().splitlines()[-1] == f"{os.getpid()}:[100]"


def test_spans_added_while_a_full_queue_is_exported_are_exported_or_counted_as_dropped():
    """A queue no longer than a batch, a slow exporter, two threads adding: the export thread
    keeps going (it never pops from a queue shorter than it counted) and sends whole batches."""

    class SlowExporter(RecordingExporter):
        def export(self, batch):
            time.sleep(0.001)
            super().export(batch)

    exporter = SlowExporter()
    settings = {
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_BSP_MAX_QUEUE_SIZE": "8",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8",
    }
    batch = SpanBatch(exporter, settings)

    def add_many(first: int) -> None:
        for number in range(first, first + 1000):
            batch.add(FakeSpan(number))

    adders = [threading.Thread(target=add_many, args=(start,)) for start in (0, 1000)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join(timeout=30)
    assert batch._thread.is_alive()
    batch.add(FakeSpan(5000))  # after the rush: still exported
    batch.shutdown()
    assert all(0 < len(one) <= 8 for one in exporter.batches)
    assert exporter.batches[-1][-1].number == 5000 and batch._dropped > 0
