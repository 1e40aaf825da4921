"""A strict YAML reader for spec files, built directly on parse events.

Why not ``yaml.safe_load``: it expands aliases (an alias bomb grows exponentially),
silently keeps the last of two duplicate keys, turns ``2024-01-01`` into a date and
``yes``/``on`` into booleans, and forgets where each value came from. This reader
consumes the parser's event stream itself, so:

- the first anchor or alias stops the read before any value is built from it;
- duplicate keys, explicit tags and complex keys are problems;
- plain scalars resolve by a small YAML 1.2 core subset (null, true/false, decimal
  integers and floats); everything else, dates and ``yes/no/on/off`` included,
  stays a string; quoted scalars are always strings;
- nesting is capped;
- every value and key gets its 1-based line and column.

A file holds exactly one document: several resources in one file would make
``kind``, names and error locations ambiguous, so a second document is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from flowker.validation.problems import PathParts, Problem, SourceMap

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 32

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|(0|[1-9][0-9]*)(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_STR_TAGS = frozenset({"tag:yaml.org,2002:str", "!"})
_MAP_TAGS = frozenset({"tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({"tag:yaml.org,2002:seq"})


class YamlRejected(Exception):
    """Reading stopped: ``problems`` say why (the first one is fatal)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems[0].message if problems else "invalid YAML")
        self.problems = problems


def resolve_plain_scalar(text: str):
    """The value of an unquoted scalar: null, bool, int, float, else the text itself."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return float(text)
    return text


@dataclass
class _Frame:
    container: dict | list
    path: PathParts
    record: bool  # False inside the value of a duplicate key: it is read but dropped
    pending_key: object = None  # for mappings: the key waiting for its value
    key_marks: dict = field(default_factory=dict)  # for mappings: key -> (line, column)


class _Reader:
    def __init__(self, source: str):
        self.source = source
        self.values: dict = {}
        self.keys: dict = {}
        # path -> (start, end) offsets in the text of each string scalar that holds a
        # template or reads the input, so a problem can point inside it (SourceMap.locate_within).
        self.spans: dict = {}
        self.problems: list[Problem] = []
        self.stack: list[_Frame] = []
        self.root = None
        self.documents = 0

    def fatal(self, mark, message: str, path: PathParts = ()):
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise YamlRejected(self.problems + [Problem(self.source, line, column, path, message)])

    def problem(self, mark, message: str, path: PathParts = ()):
        self.problems.append(Problem(self.source, mark.line + 1, mark.column + 1, path, message))

    def read(self, text: str):
        try:
            for event in yaml.parse(text, Loader=_Loader):
                self.handle(event)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = " ".join(part for part in (exc.context, exc.problem) if part) or "malformed YAML"
            if mark is not None and "${{" in _line(text, mark.line):
                message += " (quote values whose expressions hold ': ', '{' or '#')"
            self.fatal(mark, f"YAML syntax error: {message}")
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            raise YamlRejected(
                [
                    Problem(
                        self.source,
                        line,
                        column,
                        (),
                        f"YAML syntax error: {exc.reason} (character #x{exc.character:04x})",
                    )
                ]
            ) from None
        except yaml.YAMLError as exc:
            raise YamlRejected([Problem(self.source, None, None, (), f"YAML syntax error: {exc}")]) from None
        return self.root

    def handle(self, event) -> None:
        if isinstance(event, yaml.AliasEvent):
            self.fatal(event.start_mark, f"YAML aliases are not allowed (*{event.anchor}): write the value out")
        if getattr(event, "anchor", None):
            self.fatal(event.start_mark, f"YAML anchors are not allowed (&{event.anchor}): write the value out")
        if isinstance(event, yaml.ScalarEvent):
            self.scalar(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.start_collection(event)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = self.stack.pop()
            self.attach(frame.container, None, frame.path, frame.record, recorded=True)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fatal(
                    event.start_mark,
                    "a spec file holds one document; put each resource in its own file",
                )

    def scalar(self, event) -> None:
        top = self.stack[-1] if self.stack else None
        if isinstance(top, _Frame) and isinstance(top.container, dict) and top.pending_key is None:
            self.key(top, event)
            return
        if event.tag is not None and event.tag not in _STR_TAGS:
            self.fatal(
                event.start_mark, f"YAML tags are not allowed ({_short_tag(event.tag)}): quote the value instead"
            )
        value = resolve_plain_scalar(event.value) if event.implicit[0] and event.tag is None else event.value
        path, record = self.child_path()
        if record and isinstance(value, str) and ("workflow" in value or "${{" in value):
            self.spans[path] = (event.start_mark.index, event.end_mark.index)
        self.attach(value, event.start_mark, path, record)

    def key(self, frame: _Frame, event) -> None:
        if event.tag is not None and event.tag not in _STR_TAGS:
            self.fatal(event.start_mark, f"YAML tags are not allowed ({_short_tag(event.tag)})")
        key = event.value
        mark = (event.start_mark.line + 1, event.start_mark.column + 1)
        path = frame.path + (key,)
        if key in frame.key_marks:
            first_line = frame.key_marks[key][0]
            self.problem(event.start_mark, f"duplicate key {key!r} (first at line {first_line})", path)
            frame.pending_key = _Duplicate(key)
            return
        frame.key_marks[key] = mark
        if frame.record:
            self.keys[path] = mark
        frame.pending_key = key

    def start_collection(self, event) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.container, dict) and top.pending_key is None:
            self.fatal(event.start_mark, "mapping keys must be plain strings")
        is_mapping = isinstance(event, yaml.MappingStartEvent)
        allowed = _MAP_TAGS if is_mapping else _SEQ_TAGS
        if event.tag is not None and event.tag not in allowed:
            self.fatal(event.start_mark, f"YAML tags are not allowed ({_short_tag(event.tag)})")
        if len(self.stack) >= MAX_DEPTH:
            self.fatal(event.start_mark, f"nesting is deeper than {MAX_DEPTH} levels")
        path, record = self.child_path()
        if record:
            self.values[path] = (event.start_mark.line + 1, event.start_mark.column + 1)
        self.stack.append(_Frame({} if is_mapping else [], path, record))

    def child_path(self) -> tuple[PathParts, bool]:
        if not self.stack:
            return (), True
        top = self.stack[-1]
        if isinstance(top.container, list):
            return top.path + (len(top.container),), top.record
        if isinstance(top.pending_key, _Duplicate):
            return top.path + (top.pending_key.key,), False
        return top.path + (top.pending_key,), top.record

    def attach(self, value, mark, path: PathParts, record: bool, recorded: bool = False) -> None:
        if record and not recorded:
            self.values[path] = (mark.line + 1, mark.column + 1)
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            top.container.append(value)
        else:
            if not isinstance(top.pending_key, _Duplicate):
                top.container[top.pending_key] = value
            top.pending_key = None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


def _line(text: str, index: int) -> str:
    lines = text.splitlines()
    return lines[index] if 0 <= index < len(lines) else ""


@dataclass(frozen=True)
class _Duplicate:
    key: str


def read_yaml(text: str, source: str) -> tuple[object, SourceMap, list[Problem]]:
    """The document's value, where each part of it is, and non-fatal problems.

    Raises :class:`YamlRejected` when reading had to stop (syntax error, anchor,
    alias, tag, second document, too deep).
    """
    reader = _Reader(source)
    root = reader.read(text)
    return root, SourceMap(values=reader.values, keys=reader.keys, spans=reader.spans, text=text), reader.problems
