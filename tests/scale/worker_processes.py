"""``flowker worker`` processes the resume tests kill with SIGKILL, a stub service that
holds a step's calls and records every call's Idempotency-Key, and a lock holder that
keeps a run's next commit waiting.

Every loop is bounded by a deadline; every process started is stopped by its fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from scale_helpers import STOP_TIMEOUT, wait_for

E2E_FOLDER = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_FOLDER) not in sys.path:
    sys.path.append(str(E2E_FOLDER))

from e2e_helpers import flowker_env, run_flowker  # noqa: E402  (the e2e folder is on the path only from here)

WORKER_READY = "Flowker worker"
HOLD_SECONDS = 30.0

__all__ = ["ChainStub", "CommitBlocker", "WorkerProcess", "apply_chain", "chain_env", "enqueue_runs"]


def chain_env(database_url: str, lease_seconds: float) -> dict:
    return flowker_env(database_url, FLOWKER_EXECUTION_LEASE_SECONDS=str(lease_seconds))


class WorkerProcess:
    """``flowker worker --concurrency N --db URL`` in its own process group."""

    def __init__(self, env: dict, database_url: str, concurrency: int = 2):
        self.env = env
        self.args = [
            sys.executable,
            "-m",
            "flowker",
            "worker",
            "--concurrency",
            str(concurrency),
            "--db",
            database_url,
            "--grace-seconds",
            "0",
        ]
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "WorkerProcess":
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"flowker worker exited with {self.process.returncode}:\n{self.output}")
            return WORKER_READY in self.output

        wait_for(ready, "flowker worker to start", 60.0)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def kill_hard(self) -> None:
        """SIGKILL, as a host that loses power would: nothing is flushed or rolled back."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


class ChainStub:
    """The service the chain's three steps call (/one, /two, /three). Records (path,
    Idempotency-Key) of every call; /two calls wait for :attr:`release` (bounded), and
    ``on_two`` (if set) runs once, on the first /two call, before it is answered."""

    def __init__(self, hold_two: bool = True):
        self.release = threading.Event()
        if not hold_two:
            self.release.set()
        self.on_two = None
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request):
        key = request.header("Idempotency-Key")
        hook = None
        with self._lock:
            self.calls.append((request.path, key))
            if request.path == "/two" and self.on_two is not None:
                hook, self.on_two = self.on_two, None
        if request.path == "/two":
            if hook is not None:
                hook()
            self.release.wait(HOLD_SECONDS)
        return 200, {}, {"path": request.path, "key": key}

    def keys(self, path: str) -> list[str]:
        with self._lock:
            return [key for called, key in self.calls if called == path]


CHAIN_EXECUTOR = """\
kind: Executor
name: chain
baseUrl: {base_url}
endpoints:
  - {{name: one, path: /one, method: POST, timeout: 40}}
  - {{name: two, path: /two, method: POST, timeout: 40}}
  - {{name: three, path: /three, method: POST, timeout: 40}}
authentication: {{type: none}}
"""

CHAIN_WORKFLOW = """\
kind: Workflow
name: {name}
nodes:
  - {{id: start, type: trigger, data: {{triggerType: manual}}}}
  - {{id: one, type: executor, data: {{executor: chain, endpoint: one, body: {{n: "${{{{ workflow.n }}}}"}}}}}}
  - {{id: two, type: executor, data: {{executor: chain, endpoint: two, body: {{after: "${{{{ nodes.one.body.key }}}}"}}}}}}
  - {{id: three, type: executor, data: {{executor: chain, endpoint: three}}}}
  - id: out
    type: action
    data:
      actionType: set_output
      output: {{n: "${{{{ workflow.n }}}}", one: "${{{{ nodes.one.body.key }}}}", two: "${{{{ nodes.two.body.key }}}}"}}
edges:
  - {{source: start, target: one}}
  - {{source: one, target: two}}
  - {{source: two, target: three}}
  - {{source: three, target: out}}
"""


def apply_chain(folder: Path, env: dict, database_url: str, base_url: str, name: str = "resumable") -> None:
    """The executor and the 5-step chain workflow, applied and activated with ``flowker apply``."""
    (folder / "executors").mkdir(parents=True, exist_ok=True)
    (folder / "workflows").mkdir(parents=True, exist_ok=True)
    (folder / "executors" / "chain.yaml").write_text(CHAIN_EXECUTOR.format(base_url=base_url))
    (folder / "workflows" / f"{name}.yaml").write_text(CHAIN_WORKFLOW.format(name=name))
    done = run_flowker(["apply", "--activate", "--db", database_url, str(folder)], env)
    assert done.returncode == 0, done.stdout + done.stderr


class CommitBlocker:
    """Holds a write transaction that keeps a run's next commit waiting: on PostgreSQL a
    row lock on the execution (its progress update waits), on SQLite the write lock.
    Held from :meth:`hold` (any thread) until :meth:`release`; in a thread of its own."""

    def __init__(self, database_url: str, execution_id: str):
        self.database_url = database_url
        self.execution_id = execution_id
        self.held = threading.Event()
        self._release = threading.Event()
        self.backend_pid: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def hold(self) -> None:
        self._thread.start()
        if not self.held.wait(30):
            raise AssertionError(f"could not lock the database: {self.error!r}")

    def release(self) -> None:
        self._release.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)

    def _hold(self) -> None:
        from flowker.storage.database import close_database, is_postgres, open_database, write_transaction

        database = open_database(self.database_url)
        try:
            with database.connection_context(), write_transaction(database):
                if is_postgres(database):
                    self.backend_pid = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
                    database.execute_sql(
                        'SELECT "id" FROM "execution" WHERE "id" = %s FOR UPDATE', (self.execution_id,)
                    )
                else:
                    database.execute_sql(
                        "UPDATE execution SET current_step = current_step WHERE id = ?", (self.execution_id,)
                    )
                self.held.set()
                self._release.wait(HOLD_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - reported by hold()
            self.error = exc
        finally:
            close_database(database)

    def someone_waits(self) -> bool:
        """PostgreSQL: another backend waits for this lock (SQLite cannot tell: True)."""
        if self.backend_pid is None:
            return True
        from flowker.storage.database import close_database, open_database

        database = open_database(self.database_url)
        try:
            with database.connection_context():
                row = database.execute_sql(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (self.backend_pid,)
                ).fetchone()
            return bool(row[0])
        finally:
            close_database(database)


def enqueue_runs(database_url: str, workflow_name: str, count: int) -> list[str]:
    """Queue ``count`` runs of the workflow (inputs ``{"n": 0..count-1}``), as the API would."""
    from flowker.audit.chain import Actor
    from flowker.plugins import load_registry
    from flowker.runtime import Runtime
    from flowker.settings import Settings
    from flowker.storage.models import Workflow

    settings = Settings.from_mapping({"database_url": database_url})
    runtime = Runtime.from_settings(settings, registry=load_registry(settings))
    actor = Actor("api_key", "resume-test", "127.0.0.1")
    try:
        with runtime.bound(), runtime.database.connection_context():
            workflow = Workflow.get(Workflow.name == workflow_name)
            service = runtime.execution_service
            return [service.enqueue(workflow.id, {"n": n}, actor=actor).execution.id for n in range(count)]
    finally:
        runtime.close()
