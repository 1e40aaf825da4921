"""What data an expression can read, so it is given only that.

The CEL binding converts every variable it is handed into CEL values on each
evaluation, so evaluating ``${{ nodes.score.body.score }}`` against all node outputs
costs time in proportion to all of them: a workflow of 100 nodes with many expressions
spent seconds of CPU per run converting the same data over and over. Each expression is
therefore scanned once, at compile time, for the paths it starts from its root variables
(``workflow``, ``nodes``, ``execution``): ``nodes.score.body.score``,
``nodes["fraud-check"]``, ``workflow.items`` (the receiver of ``.map(...)``). At
evaluation only those values are passed, inside skeleton maps that hold just the keys on
the way to them.

The projection only ever passes *more* than an expression can observe, never less: a
path's last value is passed whole, a path that cannot be followed (a list indexed by a
name, a missing key) stops where it ends, and a root used any other way (``size(nodes)``,
``nodes[workflow.key]``) is passed whole. Text inside string literals may add paths;
that only costs a little time.
"""

from __future__ import annotations

import re
from typing import Any

ROOTS = ("workflow", "nodes", "execution")

_ROOT = re.compile(r"(?<![\w.$])(workflow|nodes|execution)\b")
_FIELD = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_INDEX = re.compile(r"""\s*\[\s*(?:"([^"\\\n]*)"|'([^'\\\n]*)'|(\d{1,9}))\s*\]""")
_CALL = re.compile(r"\s*\(")

Path = tuple  # (root, key or index, ...)


def referenced_paths(source: str) -> tuple[Path, ...]:
    """Every path the expression reads from a root variable (see the module doc)."""
    paths: set[Path] = set()
    for match in _ROOT.finditer(source):
        path: list = [match.group(1)]
        position = match.end()
        while True:
            field = _FIELD.match(source, position)
            if field:
                if _CALL.match(source, field.end()):
                    break  # a method (.map(, .size(...)): its receiver is the value read
                path.append(field.group(1))
                position = field.end()
                continue
            index = _INDEX.match(source, position)
            if index:
                key = index.group(1) if index.group(1) is not None else index.group(2)
                path.append(int(index.group(3)) if key is None else key)
                position = index.end()
                continue
            break
        paths.add(tuple(path))
    # A path below another one adds nothing: the shorter one is passed whole.
    return tuple(sorted((p for p in paths if not any(q != p and p[: len(q)] == q for q in paths)), key=str))


def project(variables: dict, paths: tuple[Path, ...]) -> dict:
    """The part of ``variables`` the paths reach (values shared, not copied)."""
    scope: dict = {}
    for path in paths:
        _place(scope, variables, path)
    return scope


def _place(target: dict, source: Any, path: Path) -> None:
    key, rest = path[0], path[1:]
    if not isinstance(source, dict) or key not in source:
        return  # missing: CEL reports it (or has() answers false) exactly as with everything
    value = source[key]
    if not rest or not isinstance(value, dict) or not isinstance(rest[0], str):
        target[key] = value  # the end of the path, or a value it cannot go into: whole
        return
    child = target.get(key)
    if child is value:
        return  # already passed whole for a shorter path
    if child is None:
        child = target[key] = {}
    _place(child, value, rest)
