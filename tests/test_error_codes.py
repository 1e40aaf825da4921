"""The FLK code catalog (flowker/error_codes.py) is the only place codes are defined: each
once, each used, and docs/error-codes.md shows exactly it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import flowker
from flowker.error_codes import ErrorCode, markdown
from flowker.errors import FlowkerError

PACKAGE = Path(flowker.__file__).parent
CATALOG = PACKAGE / "error_codes.py"
CODE = re.compile(r"FLK-\d{4}")


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path != CATALOG)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_each_code_is_defined_once_in_the_catalog():
    tree = ast.parse(CATALOG.read_text(encoding="utf-8"))
    catalog = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "ErrorCode")
    literals = [
        statement.value.elts[0].value
        for statement in catalog.body
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Tuple)
    ]
    duplicates = {code for code in literals if literals.count(code) > 1}
    assert not duplicates, f"codes defined more than once: {sorted(duplicates)}"
    assert sorted(literals) == sorted(member.value for member in ErrorCode)


def test_no_code_literal_outside_the_catalog():
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if CODE.search(node.value):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "FLK codes belong in flowker/error_codes.py:\n" + "\n".join(found)


def test_every_catalog_code_is_used_and_every_mentioned_code_exists():
    used: set[str] = set()
    mentioned: set[str] = set()
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        used.update(re.findall(r"\bErrorCode\.([A-Z][A-Z0-9_]*)\b", text))
        mentioned.update(CODE.findall(text))  # comments and docstrings that name a code
    names = {member.name for member in ErrorCode}
    assert not used - names, f"unknown catalog names: {sorted(used - names)}"
    assert not names - used, f"codes nothing raises or records: {sorted(names - used)}"
    values = {member.value for member in ErrorCode} | {"FLK-0001"}
    assert not mentioned - values, f"comments name codes that do not exist: {sorted(mentioned - values)}"


def test_every_error_class_takes_status_and_title_from_its_code():
    for info in pkgutil.walk_packages(flowker.__path__, "flowker."):
        if not info.name.endswith(("__main__", "gunicorn_app", "gunicorn_worker")):
            importlib.import_module(info.name)
    seen = []
    pending = [FlowkerError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        entry = ErrorCode(cls.code)
        assert (cls.http_status, cls.title) == (entry.status, entry.error_title), cls
        seen.append(cls.__name__)
    assert {"SpecError", "ExpressionError", "CallFailed", "CircuitOpenError"} <= set(seen)


def test_an_error_raised_with_a_domain_code_answers_that_codes_status_and_title():
    from flowker.errors import NotFound, UnprocessableEntity

    error = NotFound("workflow x not found", code=ErrorCode.WORKFLOW_NOT_FOUND)
    assert (error.http_status, error.to_dict()) == (
        404,
        {"code": "FLK-0100", "title": "Not Found", "message": "workflow x not found"},
    )
    reused = UnprocessableEntity("used", code=ErrorCode.IDEMPOTENCY_KEY_REUSED)
    assert reused.to_dict()["title"] == "Idempotency Key Reused"
    assert ErrorCode.FAILED_BY_ACTION != ErrorCode.INVALID_EXECUTION_REQUEST == "FLK-0510"


def test_the_documentation_is_the_catalog():
    docs = PACKAGE.parent / "docs" / "error-codes.md"
    assert docs.read_text(encoding="utf-8") == markdown(), (
        "docs/error-codes.md is stale: python -m flowker.error_codes > docs/error-codes.md"
    )
