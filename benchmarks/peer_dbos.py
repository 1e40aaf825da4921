"""The peer workload in DBOS Transact (Python): a durable workflow (the trigger) of 10
steps each calling the stub over HTTP, and the workflow's return value (the output).

    benchmarks/.dbos-venv/bin/python -P benchmarks/peer_dbos.py

Run by :mod:`benchmarks.dbos_side_by_side` with DBOS's own virtualenv (DBOS is not a
Flowker dependency); it never imports Flowker. DBOS checkpoints the workflow's input,
each step's output and the workflow's result in its system database: SQLite or
PostgreSQL, as ``system_database_url`` says. No Conductor key: nothing leaves 127.0.0.1.

It speaks JSON lines on stdin/stdout, as ``benchmarks/step_child.py`` does, so rounds of
both engines interleave in one run:

* ``{"op": "setup", "database_url": URL, "stub_url": URL, "wal": false}`` -> ``{"ready": true,
  "engine": ..., "startup_seconds": ...}`` (DBOS launched: its system database created and
  migrated). ``"wal": true`` gives DBOS's SQLite connections Flowker's settings
  (``journal_mode=WAL``, ``synchronous=NORMAL``: no fsync per commit) instead of its own
  (the rollback journal and ``synchronous=FULL``: an fsync or more per commit);
* ``{"op": "round", "executions": N}`` -> ``{"samples": [ms per step], "cpu_ms": [...],
  "seconds": wall}``, a step's cost being (workflow wall time - time inside the 10 HTTP
  calls) / 12 steps, as Flowker's is measured;
* ``{"op": "stop"}``, or end of input.
"""

from __future__ import annotations

import json
import sys
import time

STEPS = 12  # trigger + 10 calls + output, as in Flowker's workflow


class Side:
    def __init__(self, database_url: str, stub_url: str, wal: bool = False):
        import httpx
        from dbos import DBOS

        if wal:
            import sqlalchemy
            from sqlalchemy import event

            def like_flowker(connection, _record) -> None:
                if type(connection).__module__.startswith("sqlite3"):
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=NORMAL")

            event.listen(sqlalchemy.engine.Engine, "connect", like_flowker)

        began = time.perf_counter()
        self.client = httpx.Client(base_url=stub_url, headers={"Authorization": "Bearer benchmark-token-value"})
        self.inside_calls = 0.0
        side = self

        @DBOS.step()
        def call_stub(order_id: str, step: int) -> dict:
            started = time.perf_counter()
            response = side.client.post("/score", json={"orderId": order_id, "step": step})
            response.raise_for_status()
            body = response.json()
            side.inside_calls += time.perf_counter() - started
            return body

        @DBOS.workflow()
        def ten_calls(order_id: str) -> dict:
            last: dict = {}
            for step in range(10):
                last = call_stub(order_id, step)
            return {"orderId": order_id, "score": last["score"]}

        self.workflow = ten_calls
        DBOS(config={"name": "flowker-bench-peer", "system_database_url": database_url, "log_level": "WARNING"})
        DBOS.launch()
        self.dbos = DBOS
        self.startup_seconds = time.perf_counter() - began
        self.journal_mode = None
        if database_url.startswith("sqlite:///"):
            import sqlite3

            probe = sqlite3.connect(database_url[len("sqlite:///") :])
            self.journal_mode = probe.execute("PRAGMA journal_mode").fetchone()[0]
            probe.close()
        self.number = 0

    def round(self, executions: int) -> dict:
        samples, cpu = [], []
        began_all = time.perf_counter()
        for _ in range(executions):
            self.number += 1
            self.inside_calls = 0.0
            cpu_began = time.process_time()
            began = time.perf_counter()
            output = self.workflow(f"o-{self.number}")
            wall = time.perf_counter() - began
            if output.get("score") is None:
                raise SystemExit(f"the peer workflow returned {output!r}")
            samples.append((wall - self.inside_calls) * 1000.0 / STEPS)
            cpu.append((time.process_time() - cpu_began) * 1000.0)
        return {"samples": samples, "cpu_ms": cpu, "seconds": time.perf_counter() - began_all}

    def close(self) -> None:
        self.dbos.destroy()
        self.client.close()


def main() -> int:
    import dbos

    answers, sys.stdout = sys.stdout, sys.stderr  # whatever else prints must not break the protocol
    side = None
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "setup":
                side = Side(request["database_url"], request["stub_url"], bool(request.get("wal")))
                version = getattr(dbos, "__version__", None)
                if version is None:
                    from importlib.metadata import version as installed

                    version = installed("dbos")
                answer = {
                    "ready": True,
                    "engine": f"dbos {version}",
                    "startup_seconds": side.startup_seconds,
                    "journal_mode": side.journal_mode,
                }
            elif request["op"] == "round":
                assert side is not None, "setup first"
                answer = side.round(int(request["executions"]))
            else:
                break
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        if side is not None:
            side.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
