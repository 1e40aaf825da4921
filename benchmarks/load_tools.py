"""Load-test tools for the REST benchmarks: CPU accounting per process group, and ``wrk``
(installed from Debian when missing) driving synchronous executions with a Lua script.

Used through :mod:`benchmarks.api` (which re-exports them with its API key filled in).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from dataclasses import dataclass


# --------------------------------------------------------------------------- CPU accounting


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as handle:
                kids = [int(kid) for kid in handle.read().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


def postgres_pids() -> list[int]:
    """Every local PostgreSQL process (its backends do the database's share of the work;
    other users of the same server count too)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == "postgres":
                        found.append(int(entry))
            except OSError:
                pass
    return found


def cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by these processes (exited ones count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuShare:
    """CPU seconds of named process groups (and the whole machine) over a block."""

    def __init__(self, groups: dict):
        self.groups = groups  # name -> callable giving the pids now
        self.used: dict[str, float] = {}
        self.machine_busy = 0.0
        self.wall = 0.0

    def __enter__(self) -> "CpuShare":
        self._pids = {name: pids() for name, pids in self.groups.items()}
        self._start = {name: cpu_seconds(pids) for name, pids in self._pids.items()}
        self._machine = machine_cpu()
        self._began = time.perf_counter()
        return self

    def add(self, name: str, pid_list) -> None:
        """A group started inside the block (its CPU counts from zero)."""
        self._pids[name] = list(pid_list)
        self._start[name] = 0.0

    def finish(self, extra: dict | None = None) -> None:
        """Read the counters now (call before the processes exit); ``extra`` adds seconds by name."""
        self.wall = time.perf_counter() - self._began
        for name, pids in self._pids.items():
            self.used[name] = cpu_seconds(pids) - self._start[name]
        for name, seconds in (extra or {}).items():
            self.used[name] = self.used.get(name, 0.0) + seconds
        busy, total = machine_cpu()
        self.machine_busy = (busy - self._machine[0]) / max(1, total - self._machine[1])

    def __exit__(self, *exc_info) -> None:
        if not self.wall:
            self.finish()

    def lines(self, completed: int) -> list[str]:
        capacity = self.wall * (os.cpu_count() or 1)
        out = [f"CPU over {self.wall:.1f} s ({os.cpu_count()} CPUs, machine {100 * self.machine_busy:.0f}% busy):"]
        for name, seconds in self.used.items():
            per = f", {1000 * seconds / completed:.2f} ms per execution" if completed else ""
            out.append(f"  {name:10s} {seconds:6.2f} s = {100 * seconds / capacity:4.1f}% of the machine{per}")
        return out


# --------------------------------------------------------------------------- wrk


WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
counter = 0
bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local body = '{"inputData": {"orderId": "wrk-' .. counter .. '", "amount": ' .. (counter %% 1000) .. '}}'
  return wrk.format(nil, nil, nil, body)
end

response = function(status, headers, body)
  if status ~= 201 or not string.find(body, '"status": *"completed"') then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("bad")
  end
  io.write(string.format(
    'WRK {"requests": %%d, "bad": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"timeout": %%d, "status": %%d, "seconds": %%f, "p50": %%d, "p90": %%d, "p99": %%d, ' ..
    '"max": %%d, "mean": %%f}\\n',
    summary.requests, failed, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def find_wrk(install: bool = True) -> str | None:
    """The wrk binary; installs the Debian package ``wrk`` when missing and allowed (as root)."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is not installed: apt-get install -y wrk ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int
    bad: int  # answered, but not a 201 with status completed
    socket_errors: int
    seconds: float
    latencies_ms: dict  # p50, p90, p99, max, mean

    @property
    def completed(self) -> int:
        return self.requests - self.bad

    @property
    def errors(self) -> int:
        return self.bad + self.socket_errors


def run_wrk(
    url: str,
    workflow_id: str,
    seconds: float,
    connections: int,
    *,
    api_key: str,
    wrk: str = "wrk",
    threads: int = 1,
    on_start=None,
) -> WrkResult:
    """``wrk`` POSTing executions with distinct bodies for ``seconds`` over ``connections``
    keep-alive connections. ``on_start(pid)`` is called once wrk runs (CPU accounting)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"key": api_key})
    try:
        process = subprocess.Popen(
            [
                wrk,
                f"-t{threads}",
                f"-c{max(connections, threads)}",
                f"-d{max(1, int(round(seconds)))}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                f"{url}/v1/workflows/{workflow_id}/executions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if on_start is not None:
            on_start(process.pid)
        output, _ = process.communicate(timeout=seconds + 120)
    finally:
        os.unlink(script.name)
    line = next((line for line in output.splitlines() if line.startswith("WRK ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary:\n{output}")
    data = json.loads(line[4:])
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    latencies = {key: data[key] / 1000.0 for key in ("p50", "p90", "p99", "max", "mean")}
    return WrkResult(data["requests"], data["bad"], socket_errors, data["seconds"], latencies)


def run_wrk_all(
    urls: list[str], workflow_id: str, seconds: float, connections: int, *, api_key: str, wrk: str = "wrk"
) -> WrkResult:
    """One wrk per server URL at once (connections split between them); results summed.
    Latency percentiles are the worst server's (conservative)."""
    results: list[WrkResult | None] = [None] * len(urls)
    per_server = max(1, connections // len(urls))

    def one(index: int) -> None:
        results[index] = run_wrk(urls[index], workflow_id, seconds, per_server, api_key=api_key, wrk=wrk)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 180)
    if any(result is None for result in results):
        raise SystemExit("a wrk run did not finish")
    latencies = {key: max(result.latencies_ms[key] for result in results) for key in ("p50", "p90", "p99", "max")}
    total = sum(result.requests for result in results)
    latencies["mean"] = sum(result.latencies_ms["mean"] * result.requests for result in results) / max(1, total)
    return WrkResult(
        total,
        sum(result.bad for result in results),
        sum(result.socket_errors for result in results),
        max(result.seconds for result in results),
        latencies,
    )


def callgrind_instructions(arguments: list[str], cwd, environment: dict | None = None) -> int:
    """Instructions ``valgrind --tool=callgrind`` counts for ``python *arguments`` (start-up
    included), with str hashes fixed (seed 0) so dictionary probes repeat from run to run."""
    return sum(callgrind_instructions_per_thread(arguments, cwd, environment, separate=False).values())


def callgrind_instructions_per_thread(
    arguments: list[str], cwd, environment: dict | None = None, *, separate: bool = True
) -> dict[int, int]:
    """As :func:`callgrind_instructions`, counted per thread (1: the main thread, then in the
    order the threads started) with ``separate``; ``{0: total}`` without."""
    with tempfile.TemporaryDirectory(prefix="flowker-callgrind-") as scratch:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/callgrind.out", sys.executable]
        if separate:
            command.insert(2, "--separate-threads=yes")
        environment = {**(os.environ if environment is None else environment), "PYTHONHASHSEED": "0"}
        done = subprocess.run(
            command + arguments, cwd=cwd, env=environment, capture_output=True, text=True, timeout=1800
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"the measured process failed ({done.returncode}):\n{done.stderr[-2000:]}")
        if not separate:
            return {0: int(found.group(1))}
        threads = {}
        for path in Path(scratch).glob("callgrind.out-*"):  # one file per thread: callgrind.out-01...
            summary = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.MULTILINE)
            threads[int(path.name.rsplit("-", 1)[1])] = int(summary.group(1)) if summary else 0
        return threads


def _v2_has_cpu(root: Path) -> bool:
    controllers = root / "cgroup.subtree_control"
    return controllers.exists() and "cpu" in controllers.read_text().split()


class CpuLimit:
    """A cgroup that caps the processes moved into it at ``cpus`` CPUs (the kernel's CFS
    quota; cgroup v1's ``cpu`` controller or cgroup v2's ``cpu.max``): two servers capped
    alike get the same CPU however the scheduler would have shared the machine, so their
    throughputs compare as their costs per request do. ``with CpuLimit(0.6) as limit:
    limit.add(pids)``; removed on exit (once its processes have gone)."""

    PERIOD_US = 100_000
    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, cpus: float, name: str = "flowker-benchmark"):
        self.cpus = cpus
        quota = int(cpus * self.PERIOD_US)
        suffix = f"{name}-{os.getpid()}-{id(self):x}"
        if (self.V1 / "cpu.cfs_quota_us").exists():
            self.path = self.V1 / suffix
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        elif _v2_has_cpu(self.V2):
            self.path = self.V2 / suffix
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            raise SystemExit("--cpu-limit needs a writable cgroup cpu controller (run as root on Linux)")

    def add(self, pids) -> None:
        for pid in pids:
            try:
                (self.path / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                continue  # exited meanwhile

    def __enter__(self) -> "CpuLimit":
        return self

    def __exit__(self, *exc_info) -> None:
        for _attempt in range(50):  # its processes may take a moment to be reaped
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
