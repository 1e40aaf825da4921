"""Load one spec file (or YAML text) into a typed document.

Entry points: :func:`load_spec_file` and :func:`load_spec_text`. Both raise
:class:`flowker.errors.SpecError` listing every problem that stops the load
(oversized file, YAML errors, anchors or aliases, duplicate keys, a missing or
unknown ``kind``). Schema and semantic checks are :mod:`flowker.validation.checks`.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowker.errors import SpecError
from flowker.validation.documents import FILE_KINDS, SpecDocument, make_document, normalise_kind
from flowker.validation.problems import Problem
from flowker.validation.safe_yaml import YamlRejected, read_yaml

MAX_SPEC_BYTES = 256 * 1024
SPEC_SUFFIXES = (".yaml", ".yml")


def find_spec_files(root: Path) -> list[Path]:
    """``*.yaml``/``*.yml`` under ``root``, skipping hidden folders, in a stable order."""
    found = []
    for path in sorted(root.rglob("*")):
        # Hidden folders and files (.git, .github, .pre-commit-config.yaml) are not specs.
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix in SPEC_SUFFIXES and path.is_file():
            found.append(path)
    return found


def _too_large(source: str, size: int) -> SpecError:
    return SpecError(
        [
            Problem(
                source,
                None,
                None,
                (),
                f"file is {size} bytes; spec files are limited to {MAX_SPEC_BYTES} bytes (256 KiB)",
            )
        ]
    )


def load_spec_file(path: str | os.PathLike) -> SpecDocument:
    """Read, size-check and parse one spec file. The size is checked before reading it all."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_SPEC_BYTES:
                raise _too_large(source, size)
            # Read one byte past the limit in case the file grew since fstat.
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([Problem(source, None, None, (), f"cannot read file: {exc.strerror or exc}")]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise _too_large(source, len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError([Problem(source, line, None, (), "file is not valid UTF-8")]) from None
    return load_spec_text(text, source, from_file=True)


def load_spec_text(
    text: str, source: str = "<request>", *, expected_kind: str | None = None, from_file: bool = False
) -> SpecDocument:
    """Parse YAML (or JSON, a subset) text into a WorkflowSpec or ExecutorSpec.

    ``expected_kind`` (for REST routes) supplies ``kind`` when the text has none and
    must match it when it does. ``from_file`` marks text that lives in git, where
    secrets must be ``{$env}``/``{$file}`` references.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        raise _too_large(source, size)
    try:
        value, locations, problems = read_yaml(text, source)
    except YamlRejected as exc:
        raise SpecError(exc.problems) from None
    if value is None:
        raise SpecError(problems + [Problem(source, 1, 1, (), "the document is empty")])
    if not isinstance(value, dict):
        line, column = locations.locate(())
        raise SpecError(
            problems + [Problem(source, line, column, (), "the document must be a mapping (kind, name, ...)")]
        )

    kind = _document_kind(value, source, locations, expected_kind, problems)
    if problems or kind is None:  # no kind comes with a problem
        raise SpecError(problems)
    return make_document(kind, value, source, locations, from_file=from_file)


def _document_kind(value: dict, source, locations, expected_kind, problems: list) -> str | None:
    expected = normalise_kind(expected_kind) if expected_kind else None
    if "kind" not in value:
        if expected:
            return expected
        problems.append(Problem(source, 1, 1, (), f"missing 'kind': every spec file says kind: {_kinds_text()}"))
        return None
    line, column = locations.locate(("kind",))
    kind = value["kind"]
    if kind not in FILE_KINDS:
        shown = kind if isinstance(kind, str) and len(kind) <= 40 else type(kind).__name__
        problems.append(Problem(source, line, column, ("kind",), f"unknown kind {shown!r}: use {_kinds_text()}"))
        return None
    if expected and kind != expected:
        problems.append(
            Problem(source, line, column, ("kind",), f"kind is {kind!r} but this request takes {expected!r}")
        )
        return None
    return kind


def _kinds_text() -> str:
    return ", ".join(FILE_KINDS[:-1]) + " or " + FILE_KINDS[-1]
