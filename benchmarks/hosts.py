"""Host emulation for the scale-out benchmark: a CPU budget per server process tree.

Separate hosts each bring their own CPU; on one machine a second ``flowker serve`` only
shares the cores the first one (and PostgreSQL) already use. :class:`CpuBudget` gives one
process tree its own budget of ``cores`` CPUs with a cgroup CPU quota (cgroup v2
``cpu.max`` when a cgroup2 mount offers the ``cpu`` controller, else cgroup v1
``cpu.cfs_quota_us``/``cpu.cfs_period_us``). A process moved in before it forks keeps its
children there: gunicorn's workers land in their master's budget. Everything else
(PostgreSQL, the stub, the load generator) stays unlimited.

Needs root (or a delegated, writable cgroup). When neither is usable the budget is a no-op
and says why (``available`` False, ``reason``).

Self-check (a process and its forked child spinning inside a budget)::

    .venv/bin/python -m benchmarks.hosts [--cores 0.5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api import Server  # noqa: E402
from benchmarks.load_tools import cpu_seconds, process_tree  # noqa: E402

PREFIX = "flowker-bench-"
# A short period keeps each throttling pause short (at most period - quota per period): a
# worker paused while it holds the audit chain's lock would stall the other "hosts" too,
# which separate hosts would not do.
DEFAULT_PERIOD_US = 10_000


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _mounts():
    for line in _read("/proc/mounts").splitlines():
        _, point, kind, options = line.split()[:4]
        yield point.replace("\\040", " "), kind, options.split(",")


def _own_cgroup(v1_controller: str | None) -> str:
    """This process's cgroup path: in the v1 hierarchy holding ``v1_controller``, or v2 (None)."""
    for line in _read("/proc/self/cgroup").splitlines():
        number, controllers, path = line.split(":", 2)
        if (v1_controller is None and number == "0") or v1_controller in controllers.split(","):
            return path
    return "/"


def locate() -> tuple[str, str, str]:
    """(version "v1"/"v2", parent directory for budgets, "") or ("", "", why not)."""
    reasons = []
    for point, kind, _ in _mounts():
        if kind != "cgroup2":
            continue
        try:
            controllers = _read(os.path.join(point, "cgroup.controllers")).split()
        except OSError:
            continue
        if "cpu" in controllers:
            # The mount's root: a non-root v2 cgroup holding processes (ours) may not enable
            # controllers for its children.
            if os.access(os.path.join(point, "cgroup.subtree_control"), os.W_OK):
                return "v2", point, ""
            reasons.append(f"{point}/cgroup.subtree_control is not writable (run as root)")
        else:
            reasons.append(f"cgroup2 at {point} offers no cpu controller")
    for point, kind, options in _mounts():
        if kind != "cgroup" or "cpu" not in options:
            continue
        # Under our own cgroup, so a budget never escapes a limit this benchmark runs under.
        parent = os.path.join(point, _own_cgroup("cpu").lstrip("/"))
        if not os.path.isdir(parent):
            parent = point
        if os.access(parent, os.W_OK):
            return "v1", parent, ""
        reasons.append(f"{parent} is not writable (run as root)")
    return "", "", "; ".join(reasons) or "no cgroup with the cpu controller is mounted"


def _procs(path: str) -> list[int]:
    try:
        return [int(pid) for pid in _read(os.path.join(path, "cgroup.procs")).split()]
    except OSError:
        return []


def _remove(path: str, parent: str, wait_seconds: float = 5.0) -> bool:
    """Move whatever is left in ``path`` to ``parent``, then delete the cgroup."""
    deadline = time.monotonic() + wait_seconds
    while True:
        for pid in _procs(path):
            try:
                _write(os.path.join(parent, "cgroup.procs"), str(pid))
            except OSError as exc:
                if exc.errno != errno.ESRCH:  # it exited meanwhile: fine
                    raise
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            # EBUSY: a process exiting right now is still counted; try again shortly.
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                print(f"note: could not remove cgroup {path}: {exc}", file=sys.stderr)
                return False
            time.sleep(0.05)


def sweep(parent: str) -> None:
    """Remove budgets left behind by benchmark runs that were killed (their pid is gone)."""
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(PREFIX):
            continue
        owner = entry[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            _remove(os.path.join(parent, entry), parent)


class CpuBudget:
    """``with CpuBudget("server1", 0.6) as budget: budget.add(pid)``: ``pid`` and the
    processes it forks afterwards share 0.6 CPUs. The cgroup is removed on exit (anything
    still in it is moved back to the parent first)."""

    def __init__(self, name: str, cores: float, period_us: int = DEFAULT_PERIOD_US):
        self.name = f"{PREFIX}{os.getpid()}-{name}"
        self.cores, self.period_us = cores, period_us
        self.version = self.parent = self.path = ""
        self.reason = ""

    @property
    def available(self) -> bool:
        return bool(self.path)

    @property
    def quota_us(self) -> int:
        return max(1000, int(round(self.cores * self.period_us)))  # the kernel's minimum is 1 ms

    def __enter__(self) -> "CpuBudget":
        version, parent, reason = locate()
        if not version:
            self.reason = reason
            return self
        sweep(parent)
        path = os.path.join(parent, self.name)
        try:
            if os.path.isdir(path):
                _remove(path, parent)
            if version == "v2" and "cpu" not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
                _write(os.path.join(parent, "cgroup.subtree_control"), "+cpu")
            os.mkdir(path)
            if version == "v2":
                _write(os.path.join(path, "cpu.max"), f"{self.quota_us} {self.period_us}")
            else:
                _write(os.path.join(path, "cpu.cfs_period_us"), str(self.period_us))
                _write(os.path.join(path, "cpu.cfs_quota_us"), str(self.quota_us))
        except OSError as exc:
            self.reason = f"cannot set up a cgroup CPU quota in {parent}: {exc}"
            if os.path.isdir(path):
                _remove(path, parent)
            return self
        self.version, self.parent, self.path = version, parent, path
        return self

    def __exit__(self, *exc_info) -> None:
        if self.path:
            _remove(self.path, self.parent)
            self.path = ""

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the budget; a no-op when unavailable."""
        if self.path:
            _write(os.path.join(self.path, "cgroup.procs"), str(pid))

    def contains(self, pid: int) -> bool:
        """Whether ``pid`` is in this budget now, from ``/proc/<pid>/cgroup``."""
        if not self.path:
            return False
        try:
            lines = _read(f"/proc/{pid}/cgroup").splitlines()
        except OSError:
            return False
        for line in lines:
            number, controllers, path = line.split(":", 2)
            mine = number == "0" if self.version == "v2" else "cpu" in controllers.split(",")
            if mine:
                return path.rstrip("/").endswith("/" + self.name)
        return False

    def stat(self) -> dict:
        """``cpu.stat`` as numbers: nr_periods, nr_throttled, throttled time (and on v2 usage_usec)."""
        if not self.path:
            return {}
        pairs = (line.split() for line in _read(os.path.join(self.path, "cpu.stat")).splitlines())
        return {key: int(value) for key, value in pairs}


def probe() -> tuple[bool, str]:
    """Whether budgets work here: makes and removes one (True, "v1 in <parent>") or (False, why)."""
    with CpuBudget("probe", 0.5) as budget:
        if budget.available:
            return True, f"cgroup {budget.version} cpu quota under {budget.parent}"
        return False, budget.reason


# --------------------------------------------------------------------------- flowker serve in a budget


class HostServer(Server):
    """A server that joins its CPU budget right after it is spawned. ``Server.__init__``
    calls ``_wait_for_address`` first thing after ``Popen``; the master then imports,
    migrates and recovers for a second or more before gunicorn forks the workers, which
    stay in their parent's cgroup (:func:`check_budget` verifies it)."""

    def __init__(self, budget: CpuBudget, *args):
        self.budget = budget
        super().__init__(*args)

    def _wait_for_address(self, timeout: float = 60.0) -> str:
        self.budget.add(self.process.pid)
        return super()._wait_for_address(timeout)


def check_budget(server: Server, budget: CpuBudget, workers: int, timeout: float = 30.0) -> None:
    """The master and all its workers are in the budget (read from /proc/<pid>/cgroup)."""
    deadline = time.monotonic() + timeout
    while len(tree := process_tree(server.process.pid)) < 1 + workers and time.monotonic() < deadline:
        time.sleep(0.1)  # a worker may still be forking after the first one answered
    outside = [pid for pid in tree if not budget.contains(pid)]
    if outside or len(tree) < 1 + workers:
        raise SystemExit(f"server {server.url}: processes {outside} of {tree} are not in {budget.path}")


class HostMeter:
    """A server's CPU use (master and workers, from /proc) and its budget's throttling,
    from construction to :meth:`read`; and, a second in, the client connections each
    worker holds (a gthread worker serves at most ``--threads`` of them at once, so a
    worker that accepted none leaves its host's CPU half used)."""

    def __init__(self, server: Server, budget: CpuBudget):
        self.server, self.budget = server, budget
        self.used, self.stat = cpu_seconds(process_tree(server.process.pid)), budget.stat()
        self.connections: list[int] = []
        timer = threading.Timer(1.0, self._sample)
        timer.daemon = True
        timer.start()

    def _sample(self) -> None:
        port = int(self.server.url.rsplit(":", 1)[1])
        self.connections = [client_connections(pid, port) for pid in process_tree(self.server.process.pid)[1:]]

    def read(self, seconds: float) -> dict:
        """{"budget", "cores_used", "throttled" (share of quota periods that ran out),
        "connections" (per worker)} over ``seconds``."""
        now = self.budget.stat()
        periods = now["nr_periods"] - self.stat["nr_periods"]
        return {
            "budget": self.budget.cores,
            "cores_used": (cpu_seconds(process_tree(self.server.process.pid)) - self.used) / seconds,
            "throttled": (now["nr_throttled"] - self.stat["nr_throttled"]) / periods if periods else 0.0,
            "connections": self.connections,
        }


def client_connections(pid: int, port: int) -> int:
    """Established IPv4 TCP connections to local ``port`` that process ``pid`` holds."""
    inodes = set()
    with open("/proc/net/tcp") as handle:
        for line in list(handle)[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            count += target.startswith("socket:[") and target[8:-1] in inodes
    except OSError:
        pass
    return count


def host_use(result) -> str:
    """Each server's CPU use against its budget, and whether the budgets were the bound:
    "0.59/0.60 CPUs (throttled in 93% of periods); servers at their budget"."""
    used = ", ".join(
        f"{host['cores_used']:.2f}/{host['budget']:.2f} CPUs (throttled in "
        f"{100 * host['throttled']:.0f}% of periods, client connections per worker "
        f"{'/'.join(map(str, host.get('connections') or ['?']))})"
        for host in result.hosts
    )
    if all(host["cores_used"] >= 0.9 * host["budget"] for host in result.hosts):
        return used + "; servers at their budget"
    # Below budget: something else set the pace: the machine's CPU (shared with PostgreSQL
    # and any other process), the audit chain's lock, or a worker left without connections.
    waiters = result.audit_lock_waiters
    return used + (
        f"; servers BELOW their budget (machine {100 * (result.cpu_busy or 0):.0f}% busy"
        + (f", {waiters:.1f} sessions waiting for the audit lock" if waiters is not None else "")
        + ")"
    )


# --------------------------------------------------------------------------- self-check

SPINNER = """
import os, sys, time
time.sleep(0.5)            # joined the budget meanwhile; the fork below inherits it
child = os.fork()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
if child:
    os.waitpid(child, 0)
"""


def self_check(cores: float, seconds: float) -> int:
    with CpuBudget("self-check", cores) as budget:
        if not budget.available:
            print(f"host emulation unavailable: {budget.reason}")
            return 1
        process = subprocess.Popen([sys.executable, "-c", SPINNER, str(seconds)])
        budget.add(process.pid)
        time.sleep(1.0)
        tree = process_tree(process.pid)
        inside = {pid: budget.contains(pid) for pid in tree}
        before, began, stat_before = cpu_seconds(tree), time.perf_counter(), budget.stat()
        time.sleep(max(0.5, seconds - 1.5))
        used = (cpu_seconds(tree) - before) / (time.perf_counter() - began)
        stat_after = budget.stat()
        process.wait()
        periods = stat_after["nr_periods"] - stat_before["nr_periods"]
        throttled = stat_after["nr_throttled"] - stat_before["nr_throttled"]
        print(f"cgroup {budget.version} {budget.path}: quota {budget.quota_us} us per {budget.period_us} us")
        print(f"processes in the budget: {inside} (the second one forked after the move)")
        print(
            f"two spinning processes used {used:.2f} CPUs with a budget of {cores:.2f} "
            f"(throttled in {throttled} of {periods} periods)"
        )
    left = os.path.exists(budget.parent and os.path.join(budget.parent, budget.name))
    print(f"cgroup removed afterwards: {not left}")
    ok = len(inside) == 2 and all(inside.values()) and used <= cores * 1.15 and not left
    print("self-check " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check that a cgroup CPU budget holds a process tree to its quota.")
    parser.add_argument("--cores", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    return self_check(args.cores, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
