"""Problems found in a spec, each pinned to ``file:line:column`` and a JSON path.

A JSON path is kept as a tuple of keys (str) and list indexes (int) and shown as
``$.nodes[2].data.condition`` (``$["odd key"]`` for keys that are not identifiers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Mapping

PathParts = tuple  # of str | int

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_SUFFIX_TOKEN = re.compile(r"\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\.?([^.\[\]]+)")


def format_json_path(parts: Iterable) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            text += f'["{escaped}"]'
    return text


def parse_path_suffix(suffix) -> PathParts:
    """Parts of a path suffix such as ``body.items[0].id`` or ``.token`` (best effort).

    Plugins and the expression walker report locations as dotted strings; keys that
    themselves contain dots cannot be told apart, and the caller then falls back to
    the nearest enclosing location.
    """
    if isinstance(suffix, (tuple, list)):
        return tuple(suffix)
    if not suffix:
        return ()
    text = str(suffix)
    if text.startswith("$"):
        text = text[1:]
    parts: list = []
    for index, quoted, plain in _SUFFIX_TOKEN.findall(text):
        if index:
            parts.append(int(index))
        elif quoted:
            parts.append(quoted.replace('\\"', '"').replace("\\\\", "\\"))
        elif plain:
            parts.append(plain)
    return tuple(parts)


class Rank(IntEnum):
    """How likely a problem is the cause of others, most likely first.

    A misspelt field (``edge:`` for ``edges:``) is the root cause of the missing required
    field it leaves behind, which in turn explains later schema and graph problems; so
    within one file problems are listed by rank, then by line (jsonschema's relevance
    idea: the most relevant error first, every error still reported)."""

    UNKNOWN_FIELD = 0
    MISSING_FIELD = 1
    SCHEMA = 2
    CHECK = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec. Messages never hold secret values."""

    source: str
    line: int | None
    column: int | None
    path: PathParts
    message: str
    # Root causes sort first within a file (see Rank); not part of the output.
    rank: int = field(default=3, compare=False)

    @property
    def json_path(self) -> str:
        return format_json_path(self.path)

    def format(self) -> str:
        location = self.source
        if self.line is not None:
            location += f":{self.line}:{self.column or 1}"
        where = f" (at {self.json_path})" if self.path else ""
        return f"{location}: {self.message}{where}"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "path": self.json_path,
            "message": self.message,
        }

    def sort_key(self) -> tuple:
        # Root causes first (Rank), then file order; problems without a line (REST
        # bodies) keep the order they were found in.
        return (self.source, self.rank, self.line or 0, self.column or 0)


@dataclass(frozen=True)
class SourceMap:
    """Where each value (and each mapping key) of a document starts, 1-based.

    Empty for REST bodies, which have no lines.
    """

    values: Mapping[PathParts, tuple[int, int]] = field(default_factory=dict)
    keys: Mapping[PathParts, tuple[int, int]] = field(default_factory=dict)
    # (start, end) offsets in ``text`` of string scalars holding expressions.
    spans: Mapping[PathParts, tuple[int, int]] = field(default_factory=dict)
    text: str = ""

    def locate(self, path: PathParts) -> tuple[int | None, int | None]:
        """The value at ``path``, or its nearest enclosing value that was recorded."""
        path = tuple(path)
        while True:
            found = self.values.get(path)
            if found is not None:
                return found
            if not path:
                return (None, None)
            path = path[:-1]

    def locate_within(self, path: PathParts, needle: str) -> tuple[int | None, int | None]:
        """Where ``needle`` first appears in the YAML text of the string at ``path``
        (inside quotes or a block scalar alike); else where that value starts."""
        span = self.spans.get(tuple(path))
        if span is not None and needle:
            start, end = span
            found = self.text.find(needle, start, end)
            if found >= 0:
                line_start = self.text.rfind("\n", 0, found) + 1
                return self.text.count("\n", 0, found) + 1, found - line_start + 1
        return self.locate(path)

    def locate_key(self, path: PathParts) -> tuple[int | None, int | None]:
        """The mapping key that ends ``path`` (better for "unknown field" problems)."""
        found = self.keys.get(tuple(path))
        return found if found is not None else self.locate(path)


class ProblemList:
    """Collects problems for one document, locating each by its JSON path."""

    def __init__(self, source: str, source_map: SourceMap | None = None):
        self.source = source
        self.source_map = source_map or SourceMap()
        self.problems: list[Problem] = []

    def add(
        self, path: Iterable, message: str, *, at_key: bool = False, within: str = "", rank: int = Rank.CHECK
    ) -> None:
        """``at_key``: point at the key ending ``path``; ``within``: at that text inside the
        string at ``path`` (an expression's read), when it is found there."""
        path = tuple(path)
        if at_key:
            line, column = self.source_map.locate_key(path)
        elif within:
            line, column = self.source_map.locate_within(path, within)
        else:
            line, column = self.source_map.locate(path)
        self.problems.append(Problem(self.source, line, column, path, message, int(rank)))

    def __len__(self) -> int:
        return len(self.problems)


def sorted_unique(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in file order, each reported once."""
    seen = set()
    unique = []
    for problem in problems:
        marker = (problem.source, problem.line, problem.column, problem.path, problem.message)
        if marker not in seen:
            seen.add(marker)
            unique.append(problem)
    return sorted(unique, key=Problem.sort_key)
