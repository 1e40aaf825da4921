"""Evaluating expressions in separate processes, bounded in CPU and memory while they run.

The CEL library holds the GIL for a whole evaluation, so a comprehension over a large
list in a server worker's thread stops every other request of that worker until it
ends, however long; its budget could only be counted afterwards. Expressions that can
be expensive (:func:`flowker.expression_limits.needs_isolation`) are therefore sent to
an evaluator process (:mod:`flowker.expression_worker`):

* the parent waits for the answer on a pipe, which releases the GIL: the worker keeps
  answering other requests;
* CPU: the parent kills the evaluator as soon as it has used the CPU left in the
  execution's budget (its CPU time is read from ``/proc``; a single-threaded process
  cannot use more CPU than wall time, so the parent sleeps until it could have, then
  looks), or when the execution's deadline passes;
* memory: the evaluator's address space is limited (RLIMIT_AS) to what it uses idle
  plus :data:`MEMORY_BYTES`;
* a result larger than the output cap is refused in the evaluator, never copied back.

Evaluators are started lazily, per process, on first use (never at import, so a
gunicorn worker starts its own after the fork), reused, replaced after a kill, and
stopped by :meth:`ExpressionSandbox.close` (the service's close, and atexit).
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flowker.errors import OutputTooLargeError
from flowker.expressions import (
    ExpressionBudgetExceeded,
    ExpressionError,
    ExpressionMemoryExceeded,
    short_source,
)
from flowker.error_codes import ErrorCode

MEMORY_BYTES = 256 * 1024 * 1024
MAX_PROCESSES = 4
START_TIMEOUT_SECONDS = 15.0
# A request's header: the pickled tuple around the pickled result.
_ANSWER_OVERHEAD = 4096
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class EvaluatorUnavailable(ExpressionError):
    code = ErrorCode.EXPRESSION_EVALUATOR_UNAVAILABLE


class _Evaluator:
    """One evaluator process and its two pipe ends. It starts in ``/`` (``-m`` puts the
    working directory first on its path: nothing there may shadow a module)."""

    def __init__(self, memory_bytes: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowker.expression_worker", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_environment(),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.answers = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.ready = False

    def wait_ready(self, deadline: float) -> None:
        if self.ready:
            return
        if not self.answers.poll(max(0.0, deadline - time.monotonic())) or self.answers.recv_bytes() != b"ready":
            raise EOFError("the evaluator did not start")
        self.ready = True

    def cpu_seconds(self) -> float | None:
        """CPU time used so far (user + system), or None without /proc."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        """Kill the process and reap it (bounded: SIGKILL cannot be ignored)."""
        for connection in (self.requests, self.answers):
            try:
                connection.close()
            except OSError:
                pass
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kernel stuck in D state
            pass

    def forget(self) -> None:
        """Drop an evaluator inherited through fork: it belongs to the parent process."""
        for connection in (self.requests, self.answers):
            try:
                connection.close()
            except OSError:
                pass


def _child_environment() -> dict:
    """Only what the interpreter needs to find Flowker and CEL: no settings, no secrets."""
    path = [_PACKAGE_ROOT, *[os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"PYTHONPATH": os.pathsep.join(path), "PATH": os.defpath, "LC_ALL": "C.UTF-8"}


class ExpressionSandbox:
    """A small pool of evaluator processes, one per evaluation at a time."""

    def __init__(self, *, memory_bytes: int = MEMORY_BYTES, max_processes: int = MAX_PROCESSES):
        self.memory_bytes = memory_bytes
        self.max_processes = max_processes
        self._condition = threading.Condition()
        self._idle: list[_Evaluator] = []
        self._count = 0
        self._pid = os.getpid()
        self._closed = False
        self._atexit_registered = False

    # -- the pool -------------------------------------------------------------------

    def _take(self, deadline: float) -> _Evaluator:
        with self._condition:
            if self._pid != os.getpid():  # forked: the inherited processes are the parent's
                for evaluator in self._idle:
                    evaluator.forget()
                self._idle, self._count, self._pid = [], 0, os.getpid()
                self._atexit_registered = False
            while True:
                if self._closed:
                    raise EvaluatorUnavailable("the expression evaluator is shut down", expression="")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.max_processes:
                    self._count += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not self._condition.wait(left):
                    raise ExpressionBudgetExceeded(
                        "no expression evaluator became free before the expression's time ran out", expression=""
                    )
            if not self._atexit_registered:
                atexit.register(_close_at_exit, weakref.ref(self))
                self._atexit_registered = True
        try:
            return _Evaluator(self.memory_bytes)
        except OSError:
            with self._condition:
                self._count -= 1
                self._condition.notify()
            raise EvaluatorUnavailable("the expression evaluator could not be started", expression="") from None

    def _give_back(self, evaluator: _Evaluator, healthy: bool) -> None:
        if not healthy:
            evaluator.stop()
        with self._condition:
            if self._pid != os.getpid():
                return
            if healthy and not self._closed:
                self._idle.append(evaluator)
            elif self._closed:
                self._count -= 1
                if healthy:
                    evaluator.stop()
            else:
                # Replaced at once: the new process loads while the worker does other work.
                try:
                    self._idle.append(_Evaluator(self.memory_bytes))
                except OSError:
                    self._count -= 1
            self._condition.notify()

    def close(self) -> None:
        """Stop every idle evaluator; busy ones are stopped when their evaluation returns."""
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            if self._pid != os.getpid():
                for evaluator in idle:
                    evaluator.forget()
                return
            self._count -= len(idle)
            self._condition.notify_all()
        for evaluator in idle:
            evaluator.stop()

    @property
    def processes(self) -> list[int]:
        """The pids of the idle evaluators (tests)."""
        with self._condition:
            return [evaluator.process.pid for evaluator in self._idle]

    # -- one evaluation ---------------------------------------------------------------

    def evaluate(
        self, source: str, variables: dict, *, cpu_seconds: float, deadline: float, max_result_bytes: int
    ) -> tuple[Any, float]:
        """(the value, the CPU seconds used); raises an :class:`ExpressionError` (the
        budget, the memory limit, the evaluation's own error) or OutputTooLargeError."""
        evaluator = self._take(min(deadline, time.monotonic() + max(cpu_seconds, 0.0) + START_TIMEOUT_SECONDS))
        healthy = False
        try:
            try:
                evaluator.wait_ready(min(deadline, time.monotonic() + START_TIMEOUT_SECONDS))
            except (EOFError, OSError):
                raise EvaluatorUnavailable("the expression evaluator could not be started", expression=source) from None
            request = pickle.dumps((source, variables, cpu_seconds, max_result_bytes), protocol=pickle.HIGHEST_PROTOCOL)
            answer, used = self._exchange(evaluator, source, request, cpu_seconds, deadline)
            status, payload, reported = answer
            if status in ("ok", "too_large", "missing", "error"):
                healthy = True
            result = self._result(status, payload, source, max_result_bytes)
            return result, reported if reported else used
        finally:
            self._give_back(evaluator, healthy)

    def _exchange(
        self, evaluator: _Evaluator, source: str, request: bytes, cpu_seconds: float, deadline: float
    ) -> tuple[tuple, float]:
        started_wall = time.monotonic()
        started_cpu = evaluator.cpu_seconds()
        try:
            evaluator.requests.send_bytes(request)
        except OSError:
            self._raise_for_death(evaluator, source, cpu_seconds)
        used = 0.0
        while True:
            cpu_left, wall_left = cpu_seconds - used, deadline - time.monotonic()
            if cpu_left <= 0:
                raise ExpressionBudgetExceeded(
                    f"expression `{short_source(source)}` was stopped: it used the {cpu_seconds:.3g} s of CPU left in "
                    "this execution's expression budget (FLOWKER_EXPRESSION_CPU_SECONDS)",
                    expression=source,
                )
            if wall_left <= 0:
                raise ExpressionBudgetExceeded(
                    f"expression `{short_source(source)}` was stopped: the execution's deadline passed",
                    expression=source,
                )
            # A single-threaded process uses at most as much CPU as wall time passes: until
            # then there is no need to look at its CPU time.
            try:
                if evaluator.answers.poll(min(cpu_left, wall_left) + 0.002):
                    return pickle.loads(evaluator.answers.recv_bytes()), used
            except (EOFError, OSError):
                self._raise_for_death(evaluator, source, cpu_seconds)
            cpu = evaluator.cpu_seconds()
            if cpu is not None and started_cpu is not None:
                used = cpu - started_cpu
            else:
                used = time.monotonic() - started_wall

    def _raise_for_death(self, evaluator: _Evaluator, source: str, cpu_seconds: float):
        try:
            code = evaluator.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code == -signal.SIGXCPU:
            raise ExpressionBudgetExceeded(
                f"expression `{short_source(source)}` was stopped: it used more than {cpu_seconds:.3g} s of CPU",
                expression=source,
            )
        raise self._memory_error(source)

    def _memory_error(self, source: str) -> ExpressionMemoryExceeded:
        return ExpressionMemoryExceeded(
            f"expression `{short_source(source)}` was stopped: it needed more than {self.memory_bytes // 2**20} MiB of "
            "memory",
            expression=source,
        )

    def _result(self, status: str, payload: Any, source: str, max_result_bytes: int) -> Any:
        if status == "ok":
            return pickle.loads(payload)
        if status == "too_large":
            raise OutputTooLargeError(
                f"expression `{short_source(source)}` produced about {payload} bytes, more than the output cap of "
                f"{max_result_bytes} bytes (FLOWKER_MAX_OUTPUT_BYTES)"
            )
        if status == "memory":
            raise self._memory_error(source)
        if status == "missing":
            raise ExpressionError(f"expression `{source}`: no such key {payload!r}", expression=source)
        raise ExpressionError(f"expression `{source}`: {payload}", expression=source)


def _close_at_exit(reference: weakref.ref) -> None:
    sandbox = reference()
    if sandbox is not None:
        sandbox.close()
