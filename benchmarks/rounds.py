"""Same-run comparisons: sides that each run in a subprocess of their own, measured in
interleaved rounds so that a machine whose speed drifts treats them alike.

* :class:`LineChild`: a long-lived subprocess speaking JSON lines (``step_child.py``,
  ``peer_dbos.py``), so a side keeps its database and warm caches between its rounds;
* :func:`round_order`: which side goes first in each round (ABBA: before, after, after,
  before, ...), so neither always runs right after the other;
* :class:`Figures`: pooled samples of one side with p50/p99 and each round's p50, whose
  spread says how much the machine moved during the run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
from dataclasses import dataclass, field


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def round_order(sides: list, number: int) -> list:
    """Round ``number`` (0-based) runs ``sides`` forwards on rounds 0, 3, 4, 7, 8, ... and
    backwards on the others (ABBA), so each side runs first and second equally often."""
    return list(sides) if number % 4 in (0, 3) else list(reversed(sides))


@dataclass
class Figures:
    label: str
    samples: list = field(default_factory=list)
    round_p50: list = field(default_factory=list)
    cpu_ms: list = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def add_round(self, samples: list, cpu_ms: list | None = None, seconds: float = 0.0) -> None:
        self.samples += samples
        self.round_p50.append(statistics.median(samples))
        self.cpu_ms += cpu_ms or []
        self.seconds += seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 0.99)

    def rounds_text(self) -> str:
        return ", ".join(f"{value:.3f}" for value in self.round_p50)

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "p50": self.p50,
            "p99": self.p99,
            "round_p50": self.round_p50,
            "executions": len(self.samples),
            "cpu_ms_p50": statistics.median(self.cpu_ms) if self.cpu_ms else None,
            **self.extra,
        }


class LineChild:
    """A subprocess answering one JSON line per JSON line it is sent."""

    def __init__(self, argv: list[str], env: dict, cwd: str, timeout: float = 600.0):
        self.timeout = timeout
        self.stderr_lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            del self.stderr_lines[:-40]

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not answer or not answer[0]:
            self.stop()
            raise SystemExit(
                f"{self.process.args[1:3]} gave no answer to {request['op']}:\n{''.join(self.stderr_lines)}"
            )
        return json.loads(answer[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "stop"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=30)
