"""The expression evaluator process: ``python -m flowker.expression_worker MEMORY_BYTES``.

Started by :class:`flowker.expression_sandbox.ExpressionSandbox`; reads requests on
stdin and answers on stdout (``multiprocessing.connection`` framing, pickled tuples).
Its address space is limited to what it uses idle plus MEMORY_BYTES: an evaluation
that allocates past it fails here (MemoryError) or ends the process (the CEL library
aborts when an allocation fails); its parent then reports the memory limit. The CPU
limit is the parent's to enforce (it kills this process); RLIMIT_CPU is only a
backstop for a parent that died mid-evaluation. Imports nothing of Flowker's but this
module, and never sees the server's settings or secrets.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

COMPILED_CACHE_SIZE = 256


def _address_space() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit_memory(memory_bytes: int) -> None:
    try:
        limit = _address_space() + memory_bytes
    except OSError:  # no /proc: an absolute limit
        limit = memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _limit_cpu(seconds: float) -> None:
    used = time.process_time()
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = math.ceil(used + seconds) + 2
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "evaluation failed"


def serve(requests: Connection, answers: Connection) -> None:
    import cel

    programs: dict[str, Any] = {}
    answers.send_bytes(b"ready")
    while True:
        try:
            request = requests.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe (or died): nothing more to do
        source, variables, cpu_seconds, max_result_bytes = pickle.loads(request)
        _limit_cpu(cpu_seconds)
        started = time.process_time()
        try:
            program = programs.get(source)
            if program is None:
                if len(programs) >= COMPILED_CACHE_SIZE:
                    programs.clear()
                program = programs[source] = cel.compile(source)
            value = pickle.dumps(program.execute(variables), protocol=pickle.HIGHEST_PROTOCOL)
            del variables
            if len(value) > max_result_bytes:
                answer = pickle.dumps(("too_large", len(value), time.process_time() - started))
            else:
                answer = pickle.dumps(("ok", value, time.process_time() - started), protocol=pickle.HIGHEST_PROTOCOL)
            del value
        except MemoryError:
            answer = pickle.dumps(("memory", "", time.process_time() - started))
        except KeyError as exc:
            answer = pickle.dumps(("missing", str(exc.args[0]) if exc.args else "", time.process_time() - started))
        except Exception as exc:  # noqa: BLE001 - the CEL extension raises plain ValueError/TypeError/RuntimeError
            answer = pickle.dumps(("error", _first_line(str(exc))[:1000], time.process_time() - started))
        answers.send_bytes(answer)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is the parent's to handle
    requests = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # nothing printed by accident can corrupt the answers
    import cel  # noqa: F401 - loaded before the limit is measured: the limit is for evaluations

    _limit_memory(int(argv[1]))
    serve(requests, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
