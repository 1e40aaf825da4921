"""What an expression's shape allows it to cost, read from its source once at compile time.

Two answers come from one scan (string literals skipped):

* :func:`shape_problem`: the worst shapes are refused when the spec is saved, with the
  column of the macro at fault: comprehensions (``all``, ``exists``, ``exists_one``,
  ``map``, ``filter``) nested more than :data:`MAX_COMPREHENSION_NESTING` deep, or more
  than :data:`MAX_COMPREHENSIONS` of them in one expression. Seven nested ``all`` over
  ten elements are ten million iterations; sixteen chained ``map`` doubling a string
  are 64 MiB from 1 KiB.
* :func:`needs_isolation`: an expression whose cost is not bounded by its length and the
  size of the values it reads (any comprehension, or more than
  :data:`MAX_IN_PROCESS_REFERENCES` variable references, each of which may copy a 1 MiB
  value, or a ``matches`` call, which compiles a regular expression that may come from
  the input) is evaluated in a separate process (:mod:`flowker.expression_sandbox`), where
  its CPU and memory are bounded while it runs. Everything else (field reads,
  arithmetic, comparisons) stays in the worker: it costs microseconds.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MAX_COMPREHENSION_NESTING = 3
MAX_COMPREHENSIONS = 8
MAX_IN_PROCESS_REFERENCES = 8

_MACRO = re.compile(r"\.\s*(all|exists_one|exists|map|filter)\s*\(")
_REFERENCE = re.compile(r"(?<![\w.$])(?:workflow|nodes|execution)\b")
_PAREN = re.compile(r"[()]")
# Functions whose cost grows faster than their arguments: a regex is compiled per call.
_COSTLY_CALL = re.compile(r"\bmatches\s*\(")
# A string literal (a raw or bytes prefix stays outside the match: it is one letter of code).
_STRING = re.compile(
    r"'''.*?'''"
    r'|""".*?"""'
    r"|'(?:\\.|[^'\\\n])*'"
    r'|"(?:\\.|[^"\\\n])*"',
    re.DOTALL,
)


@dataclass(frozen=True)
class Shape:
    comprehensions: int
    nesting: int  # the deepest comprehension inside others (1: not nested)
    references: int  # occurrences of workflow, nodes, execution
    too_deep_at: int | None  # 0-based offset of the first macro past the nesting limit
    too_many_at: int | None  # 0-based offset of the first macro past the count limit


def _blank_strings(source: str) -> str:
    """The source with string literals' contents replaced by spaces (offsets kept)."""
    if "'" not in source and '"' not in source:
        return source
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], source)


@functools.lru_cache(maxsize=1024)
def shape(source: str) -> Shape:
    code = _blank_strings(source)
    macro_at = {match.end() - 1: match.start(1) for match in _MACRO.finditer(code)}  # "(" -> name
    open_parens: list[bool] = []  # per open "(": is it a comprehension's
    comprehensions = nesting = 0
    too_deep_at = too_many_at = None
    for paren in _PAREN.finditer(code):
        offset, char = paren.start(), paren.group()
        if char == "(":
            is_macro = offset in macro_at
            if is_macro:
                comprehensions += 1
                depth = 1 + sum(open_parens)
                nesting = max(nesting, depth)
                if depth > MAX_COMPREHENSION_NESTING and too_deep_at is None:
                    too_deep_at = macro_at[offset]
                if comprehensions > MAX_COMPREHENSIONS and too_many_at is None:
                    too_many_at = macro_at[offset]
            open_parens.append(is_macro)
        elif char == ")" and open_parens:
            open_parens.pop()
    return Shape(comprehensions, nesting, len(_REFERENCE.findall(code)), too_deep_at, too_many_at)


def shape_problem(source: str) -> tuple[str, int] | None:
    """(message, 1-based column) when the expression's shape is refused, else None."""
    found = shape(source)
    if found.too_deep_at is not None:
        message = (
            "comprehensions (all, exists, exists_one, map, filter) may be nested at most "
            f"{MAX_COMPREHENSION_NESTING} deep"
        )
        return message, found.too_deep_at + 1
    if found.too_many_at is not None:
        message = (
            f"an expression may hold at most {MAX_COMPREHENSIONS} comprehensions (all, exists, exists_one, map, filter)"
        )
        return message, found.too_many_at + 1
    return None


def needs_isolation(source: str) -> bool:
    found = shape(source)
    if found.comprehensions > 0 or found.references > MAX_IN_PROCESS_REFERENCES:
        return True
    return _COSTLY_CALL.search(_blank_strings(source)) is not None
