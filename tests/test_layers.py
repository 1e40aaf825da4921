"""The layers' dependency rule (docs/architecture.md): storage <- audit <- catalog <- runner <- queue, schedules <- api / cli.

A module may import its own layer and the layers below it, never one above: every import
counts, also the ones inside functions and under ``TYPE_CHECKING``. The modules outside the
layers (flowker.validation, flowker.security, flowker.errors...) are not checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowker

PACKAGE = Path(flowker.__file__).parent
LAYERS = {"storage": 0, "audit": 1, "catalog": 2, "runner": 3, "queue": 4, "schedules": 4, "api": 5, "cli": 5}


def _imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file of the package at ``root``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(("flowker", *path.relative_to(root).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from flowker import catalog`` imports the package too.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "flowker" and parts[1] in LAYERS:
        return parts[1]
    return None


def layer_violations(package: Path = PACKAGE) -> list[str]:
    """Every import from a layer into a higher one, as ``file:line: a imports b``."""
    violations = []
    for layer, rank in LAYERS.items():
        for path in sorted((package / layer).rglob("*.py")):
            for line, module in _imported_modules(path, package):
                target = _layer(module)
                if target is not None and LAYERS[target] > rank:
                    violations.append(f"{path.relative_to(package.parent)}:{line}: {layer} imports {module}")
    return sorted(set(violations))


def test_no_layer_imports_a_layer_above_it():
    assert layer_violations() == []


def test_the_cli_commands_do_not_import_each_other():
    """Shared command logic lives below the CLI (the spec sync in flowker.catalog.spec_sync)."""
    # common (settings, database, errors) and help_examples (help text) serve every command.
    shared = ("flowker.cli.common", "flowker.cli.help_examples")
    found = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for line, module in _imported_modules(path):
            if (
                module.startswith("flowker.cli.")
                and not module.startswith(tuple(s + "." for s in shared))
                and module not in shared
            ):
                found.append(f"cli/{path.name}:{line}: {module}")
    assert found == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule can fail: a storage module importing the audit chain (inside a function, as
    the executor store once did) is reported."""
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "storage" / "executor_store.py").write_text(
        "def audit():\n    from flowker.audit import chain\n    return chain\n"
    )
    (tmp_path / "runner" / "service.py").write_text("from ..api import app\nfrom flowker import cli\n")
    assert layer_violations(tmp_path) == [
        f"{tmp_path.name}/runner/service.py:1: runner imports flowker.api",
        f"{tmp_path.name}/runner/service.py:1: runner imports flowker.api.app",
        f"{tmp_path.name}/runner/service.py:2: runner imports flowker.cli",
        f"{tmp_path.name}/storage/executor_store.py:2: storage imports flowker.audit",
        f"{tmp_path.name}/storage/executor_store.py:2: storage imports flowker.audit.chain",
    ]
