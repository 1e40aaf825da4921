"""A "before" commit checked out beside the working tree, with a virtualenv of its own.

DESIGN §17 compares a change with the commit its work started from, in the same run. This
module lays that commit out and installs it; :mod:`benchmarks.before_after` runs both
trees, each in subprocesses with its own interpreter and ``PYTHONPATH`` (nothing of the
before tree is ever imported into the measuring process).

* The tree: ``git archive COMMIT`` unpacked into ``benchmarks/.before-tree`` (git-ignored),
  with the ``flowker/specs -> ../specs`` link a checkout needs to import ``flowker.specs``
  from its folder (an install maps it with ``package_dir``).
* The interpreter: ``benchmarks/.before-venv`` (git-ignored), made with this interpreter's
  ``venv``; the before tree and its plugins installed into it (not editable), their
  dependencies pinned to the versions of the environment running the benchmark
  (``pip freeze``, as constraints), so both sides run the same libraries and pip takes
  them from its usual cache and indexes, no surprise downloads.
* Reused while the commit is unchanged: a marker file in each folder names the commit
  they hold; a different commit (or a half-made folder) is laid anew.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
TREE = HERE / ".before-tree"
VENV = HERE / ".before-venv"
MARKER = ".flowker-before-commit"
# The commit issue 18's work started from (DESIGN §17's "before" for its targets).
DEFAULT_BEFORE = "cc15ca9"


@dataclass(frozen=True)
class Checkout:
    """One tree to benchmark: where its code is and which interpreter runs it."""

    label: str
    root: Path
    python: Path
    commit: str

    def environment(self, base: dict) -> dict:
        """``base`` with this tree first on the path, and no inherited Flowker settings."""
        env = {key: value for key, value in base.items() if not key.startswith(("FLOWKER_", "OTEL_"))}
        env["PYTHONPATH"] = str(self.root)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # both trees import from compiled bytecode alike
        return env


def resolve(commit: str) -> str:
    """The full hash of ``commit`` (any name git knows)."""
    completed = subprocess.run(
        ["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise SystemExit(f"--before {commit}: not a commit of this repository ({completed.stderr.strip()})")
    return completed.stdout.strip()


def current() -> Checkout:
    """The working tree, run by this interpreter (its uncommitted changes included)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "flowker"], cwd=ROOT, capture_output=True, text=True)
    commit = head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    return Checkout("after", ROOT, Path(sys.executable), commit)


def same_code(commit: str) -> bool:
    """True when the working tree's flowker/ and specs/ (uncommitted changes included) are
    those of ``commit``: the comparison is then an A/A run, and every ratio should be 1."""
    completed = subprocess.run(["git", "diff", "--quiet", commit, "--", "flowker", "specs"], cwd=ROOT)
    return completed.returncode == 0


def _marked(folder: Path, commit: str) -> bool:
    marker = folder / MARKER
    return marker.exists() and marker.read_text().strip() == commit


def _lay_tree(commit: str, log) -> None:
    if _marked(TREE, commit):
        return
    log(f"before tree: git archive {commit[:10]} -> {TREE.relative_to(ROOT)}")
    shutil.rmtree(TREE, ignore_errors=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True)
    TREE.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(TREE, filter="data")
    specs_link = TREE / "flowker" / "specs"
    if (TREE / "specs").is_dir() and not specs_link.exists():
        specs_link.symlink_to(Path("..") / "specs")
    (TREE / MARKER).write_text(commit + "\n")


def _constraints() -> str:
    """This environment's versions, less the editable installs (the trees themselves)."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    keep = [line for line in frozen.splitlines() if line and not line.startswith(("-e", "#")) and "==" in line]
    return "\n".join(keep) + "\n"


def _make_venv(commit: str, log) -> None:
    if _marked(VENV, commit) and (VENV / "bin" / "python").exists():
        return
    log(f"before venv: {VENV.relative_to(ROOT)} (pip, versions pinned to this environment's)")
    shutil.rmtree(VENV, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(VENV)
    constraints = VENV / "constraints.txt"
    constraints.write_text(_constraints())
    targets = [str(TREE)]
    targets += [str(path) for path in sorted((TREE / "plugins").glob("*")) if (path / "pyproject.toml").exists()]
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(constraints), *targets],
        check=True,
        timeout=1800,
    )
    (VENV / MARKER).write_text(commit + "\n")


def prepare(commit: str = DEFAULT_BEFORE, log=print) -> Checkout:
    """The before tree and its interpreter, laid out (or reused) for ``commit``, its modules
    compiled to bytecode as the working tree's already are."""
    full = resolve(commit)
    _lay_tree(full, log)
    _make_venv(full, log)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "compileall", "-q", str(TREE / "flowker")], check=False)
    return Checkout("before", TREE, VENV / "bin" / "python", full[:10])


if __name__ == "__main__":
    checkout = prepare(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BEFORE)
    print(f"{checkout.label}: {checkout.commit} in {checkout.root}, python {checkout.python}")
