"""The built wheel works on its own: schemas ship inside it.

Builds a wheel from a clean copy of the sources (so no stale ``build/`` folder can
leak files in), installs it into a fresh virtualenv outside the repository, and
runs ``flowker validate`` there on a copied example. Dependencies come from the
package index through pip's cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("flowker", "specs", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")


def _run(command, **kwargs):
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("FLOWKER_")
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(source: Path, out: Path) -> Path:
    if importlib.util.find_spec("build") is not None:
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)])
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)])
    (wheel,) = out.glob("flowker-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_virtualenv_and_validates_an_example(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    wheel = _build_wheel(source, tmp_path / "dist")

    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "flowker/specs/workflow.schema.json",
        "flowker/specs/executor.schema.json",
        "flowker/specs/workflow-test.schema.json",
    } <= names
    assert "flowker/validation/loader.py" in names and "flowker/cli/validate.py" in names
    # Every package of the source tree ships (setup.cfg lists them by hand).
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "flowker").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()
    # The web console's templates and static files ship inside the wheel (no CDN, no build).
    console = REPO / "flowker" / "console"
    console_files = {
        str(path.relative_to(REPO))
        for folder in ("templates", "static")
        for path in (console / folder).iterdir()
        if path.is_file()
    }
    assert "flowker/console/templates/shell.html" in console_files and "flowker/console/static/app.js" in console_files
    assert console_files - names == set()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", str(wheel)])

    work = tmp_path / "work"
    shutil.copytree(REPO / "examples" / "order-fulfilment", work / "order-fulfilment")
    located = _run(
        [str(python), "-c", "import flowker.specs, flowker; print(flowker.__file__)"], cwd=work
    ).stdout.strip()
    assert str(venv) in located and str(REPO) not in located
    # The installed console finds its shell and files inside the installed package.
    served = _run(
        [
            str(python),
            "-c",
            "from flowker.console.pages import console_routes, load_static; from flowker.settings import Settings; "
            "print(len(console_routes(Settings())), sorted(load_static()))",
        ],
        cwd=work,
    ).stdout
    assert "app.js" in served and "console.css" in served, served

    flowker = venv / "bin" / "flowker"
    result = subprocess.run(
        [str(flowker), "validate", "order-fulfilment"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "5 files checked: all valid"  # the workflow, 3 executors, its test

    # The installed command runs the example's tests offline (the harness and its schema ship).
    tested = subprocess.run(
        [str(flowker), "test", "order-fulfilment"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 cases: 3 passed, 0 failed" in tested.stdout

    broken = work / "order-fulfilment" / "workflows" / "order-fulfilment.yaml"
    broken.write_text(broken.read_text().replace("endpoint: authorise", "endpoint: authorize"))
    failed = subprocess.run(
        [str(flowker), "validate", "order-fulfilment"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )
    assert failed.returncode == 1
    assert "executor 'payments' has no endpoint 'authorize'" in failed.stdout
