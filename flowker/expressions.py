"""CEL expressions in specs: bare conditions and ``${{ expr }}`` templates.

Expressions see three variables only: ``workflow`` (the trigger input), ``nodes``
(``nodes.<id>`` is that node's output) and ``execution`` (``id``, ``workflowId``).
CEL itself has no access to the environment, files or the network. Everything is
compiled once (per workflow version) and evaluated many times.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

import cel

from flowker.errors import UnprocessableEntity
from flowker.expression_limits import needs_isolation, shape_problem
from flowker.expression_scope import project, referenced_paths
from flowker.error_codes import ErrorCode

ALLOWED_VARIABLES = frozenset({"workflow", "nodes", "execution"})

# `${{ ... }}`: the expression may not itself contain "}}".
TEMPLATE_PATTERN = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_NODE_DOT_REFERENCE = re.compile(r"(?<![\w.])nodes\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_NODE_INDEX_REFERENCE = re.compile(r"(?<![\w.])nodes\s*\[\s*(?:\"([^\"]*)\"|'([^']*)')\s*\]")
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")

MAX_EXPRESSION_LENGTH = 4096


def iter_templates(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, source) of each ``${{ source }}`` in ``text``, left to right.

    Matches exactly what :data:`TEMPLATE_PATTERN` matches, in linear time: the regex
    retries every later ``${{`` when one has no closing ``}}``, which is quadratic (a
    few hundred KiB of ``${{`` took minutes), while no closing ``}}`` after one opening
    means none after any later opening either.
    """
    position = 0
    while True:
        start = text.find("${{", position)
        if start < 0:
            return
        end = text.find("}}", start + 3)
        if end < 0:
            return
        yield start, end + 2, text[start + 3 : end]
        position = end + 2


class EvaluationBudget:
    """The CPU time the expressions of one execution may use, and where the expensive
    ones are evaluated.

    Converting the data an expression reads costs time in proportion to that data, so
    many expressions over a large input could keep a worker busy for minutes; once the
    budget is spent the next evaluation fails instead. Plain expressions take
    microseconds and run in the calling thread, counted after they return. Expressions
    whose cost their shape does not bound (:func:`flowker.expression_limits.needs_isolation`)
    go to ``sandbox`` (a :class:`flowker.expression_sandbox.ExpressionSandbox`) when one
    is given: stopped as soon as they use what is left of the budget, or 256 MiB, or
    reach ``deadline`` (``time.monotonic()``), and their result refused past
    ``max_result_bytes``.
    """

    def __init__(
        self, seconds: float, *, sandbox: Any = None, deadline: float | None = None, max_result_bytes: int = 1048576
    ):
        self.seconds = seconds
        self.spent = 0.0
        self.sandbox = sandbox
        self.deadline = deadline
        self.max_result_bytes = max_result_bytes

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent)

    def check(self) -> None:
        if self.spent >= self.seconds:
            raise ExpressionBudgetExceeded(
                f"the expressions of this execution used more than {self.seconds:g} s of CPU "
                "(FLOWKER_EXPRESSION_CPU_SECONDS: too many of them, or they read very large values)",
                expression="",
            )


class Variables(dict):
    """An execution's expression variables, carrying the :class:`EvaluationBudget` that
    every evaluation against them (conditions, templates, actions) shares."""

    __slots__ = ("budget",)

    def __init__(self, values: dict, budget: EvaluationBudget | None = None):
        super().__init__(values)
        self.budget = budget


class ExpressionError(UnprocessableEntity):
    """An expression failed to compile or to evaluate.

    ``column`` is 1-based within the expression source when CEL reports one.
    """

    code = ErrorCode.INVALID_EXPRESSION

    def __init__(self, message: str, *, expression: str, column: int | None = None):
        super().__init__(message)
        self.expression = expression
        self.column = column


class ExpressionBudgetExceeded(ExpressionError):
    """The execution's expressions used their CPU budget (or its deadline passed)."""

    code = ErrorCode.EXPRESSION_BUDGET_EXCEEDED


class ExpressionMemoryExceeded(ExpressionError):
    """An evaluation needed more memory than an evaluator process may use."""

    code = ErrorCode.EXPRESSION_MEMORY_EXCEEDED


# `workflow.orderId`, `nodes.score.body.score`: a chain of field selections, the commonest
# template, read with dict lookups instead of a CEL evaluation (see CompiledExpression.path).
_FIELD_CHAIN = re.compile(r"\s*(?:workflow|nodes|execution)(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+\s*")
_MISSING = object()
# Integers CEL hands back unchanged (int64 and uint64); others come back as doubles.
_CEL_INT_RANGE = range(-(2**63), 2**64)


def _field_chain(source: str) -> tuple[str, ...] | None:
    if not _FIELD_CHAIN.fullmatch(source):
        return None
    return tuple(part.strip() for part in source.split("."))


def _select(variables: dict, path: tuple[str, ...]) -> Any:
    """``variables[a][b]...`` when every step is a dict holding the key and the value is a
    scalar CEL would return unchanged; else :data:`_MISSING` (CEL then evaluates, and
    reports a missing key or a wrong type in its own words)."""
    value: Any = variables
    for name in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(name, _MISSING)
        if value is _MISSING:
            return _MISSING
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is float:
        return value
    if kind is int and value in _CEL_INT_RANGE:
        return value
    return _MISSING  # containers and other values: CEL's own conversion


@dataclass(frozen=True)
class CompiledExpression:
    source: str
    program: Any
    # The paths it reads from its variables (flowker.expression_scope); None: all of them.
    scope: tuple | None = None
    # For a plain field chain (`workflow.a.b`), its names: evaluated by dict lookups, with
    # the same result CEL gives; CEL still evaluates whatever the lookups cannot answer.
    path: tuple | None = None
    # Evaluated in an evaluator process when the budget has one (flowker.expression_limits).
    isolated: bool = False

    def evaluate(self, variables: dict) -> Any:
        budget = getattr(variables, "budget", None)
        if self.path is not None:
            value = _select(variables, self.path)
            if value is not _MISSING:
                if budget is not None:
                    budget.check()  # a spent budget fails every later evaluation alike
                return value
        if budget is None:
            return self._execute(variables)
        budget.check()
        if self.isolated and budget.sandbox is not None:
            return self._execute_isolated(variables, budget)
        started = time.thread_time()
        try:
            return self._execute(variables)
        finally:
            budget.spent += time.thread_time() - started

    def _execute_isolated(self, variables: dict, budget: EvaluationBudget) -> Any:
        scope = project(variables, self.scope) if self.scope is not None else dict(variables)
        deadline = budget.deadline if budget.deadline is not None else time.monotonic() + 3600.0
        try:
            value, used = budget.sandbox.evaluate(
                self.source,
                scope,
                cpu_seconds=budget.remaining,
                deadline=deadline,
                max_result_bytes=budget.max_result_bytes,
            )
        except ExpressionBudgetExceeded:
            budget.spent = max(budget.spent, budget.seconds)  # every later evaluation fails alike
            raise
        budget.spent += used
        return value

    def _execute(self, variables: dict) -> Any:
        if self.scope is not None:
            # Only what the expression reads is converted to CEL values: the binding
            # converts all it is given on every evaluation.
            variables = project(variables, self.scope)
        try:
            return self.program.execute(variables)
        except KeyError as exc:
            raise ExpressionError(
                f"expression `{self.source}`: no such key {exc.args[0]!r}", expression=self.source
            ) from None
        except Exception as exc:  # the CEL extension raises plain ValueError/TypeError/RuntimeError
            raise ExpressionError(
                f"expression `{self.source}`: {_first_line(str(exc))}", expression=self.source
            ) from None

    def variables(self) -> set[str]:
        """Top-level names used, without comprehension variables (``x`` in ``l.map(x, ...)``)."""
        names = set(self.program.variables())
        return names - set(_MACRO_VARIABLE.findall(self.source))

    def node_references(self) -> set[str]:
        return node_references(self.source)


def node_references(source: str) -> set[str]:
    """Node ids an expression reads through ``nodes.x`` or ``nodes["x"]``."""
    found = set(_NODE_DOT_REFERENCE.findall(source))
    for double, single in _NODE_INDEX_REFERENCE.findall(source):
        found.add(double or single)
    return found


def short_source(source: str) -> str:
    source = " ".join(source.split())
    return source if len(source) <= 80 else source[:77] + "..."


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "evaluation failed"


def compile_condition(source: str) -> CompiledExpression:
    """Compile a bare CEL expression (``condition`` fields); raises ExpressionError."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty", expression=str(source))
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters", expression=source[:40])
    try:
        program = cel.compile(source)
    except Exception as exc:  # ValueError with "<input>:line:col: Syntax error: ..."
        message, column = _syntax_error(str(exc))
        raise ExpressionError(
            f"invalid expression `{source.strip()}`: {message}", expression=source, column=column
        ) from None
    refused = shape_problem(source)
    if refused is not None:
        raise ExpressionError(
            f"expression `{short_source(source)}`: {refused[0]}", expression=source, column=refused[1]
        )
    compiled = CompiledExpression(
        source=source,
        program=program,
        scope=referenced_paths(source),
        path=_field_chain(source),
        isolated=needs_isolation(source),
    )
    unknown = compiled.variables() - ALLOWED_VARIABLES
    if unknown:
        raise ExpressionError(
            f"expression `{source.strip()}` uses unknown variable(s) {', '.join(sorted(unknown))}; "
            "only workflow, nodes and execution exist",
            expression=source,
        )
    return compiled


def _syntax_error(text: str) -> tuple[str, int | None]:
    for line in text.splitlines():
        match = _CEL_POSITION.search(line)
        if match:
            return match.group(3).strip(), int(match.group(2))  # CEL columns are 1-based
    return _first_line(text), None


@dataclass(frozen=True)
class _Interpolation:
    """Literal text with embedded expressions: evaluates to a string."""

    parts: tuple  # str or CompiledExpression, in order

    def evaluate(self, variables: dict) -> str:
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
            else:
                pieces.append(_to_text(part.evaluate(variables)))
        return "".join(pieces)


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


class CompiledValue:
    """A JSON-like value whose strings may hold ``${{ }}`` templates, compiled once."""

    __slots__ = ("_compiled", "expressions")

    def __init__(self, value: Any):
        self.expressions: list[CompiledExpression] = []
        self._compiled = self._compile(value)

    def _compile(self, value: Any):
        if isinstance(value, dict):
            return {key: self._compile(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._compile(item) for item in value]
        if isinstance(value, str) and "${{" in value:
            return self._compile_string(value)
        return value

    def _compile_string(self, text: str):
        matches = list(iter_templates(text))
        if not matches:
            return text
        if len(matches) == 1 and matches[0][:2] == (0, len(text)):
            compiled = compile_condition(matches[0][2].strip())
            self.expressions.append(compiled)
            return compiled  # whole-value form keeps the expression's type
        parts: list = []
        position = 0
        for start, end, source in matches:
            if start > position:
                parts.append(text[position:start])
            compiled = compile_condition(source.strip())
            self.expressions.append(compiled)
            parts.append(compiled)
            position = end
        if position < len(text):
            parts.append(text[position:])
        return _Interpolation(tuple(parts))

    @property
    def is_constant(self) -> bool:
        return not self.expressions

    def evaluate(self, variables: dict) -> Any:
        if not self.expressions:
            return self._compiled
        return _evaluate(self._compiled, variables)

    def node_references(self) -> set[str]:
        found: set[str] = set()
        for expression in self.expressions:
            found |= expression.node_references()
        return found


def _evaluate(compiled: Any, variables: dict) -> Any:
    if isinstance(compiled, dict):
        return {key: _evaluate(item, variables) for key, item in compiled.items()}
    if isinstance(compiled, list):
        return [_evaluate(item, variables) for item in compiled]
    if isinstance(compiled, (CompiledExpression, _Interpolation)):
        return compiled.evaluate(variables)
    return compiled


def compile_value(value: Any) -> CompiledValue:
    """Compile every template in a JSON-like value; raises ExpressionError."""
    return CompiledValue(value)


def iter_expressions(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(json path suffix, expression source) for every ``${{ }}`` in a value, uncompiled."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from iter_expressions(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_expressions(item, f"{path}[{index}]")
    elif isinstance(value, str) and "${{" in value:
        found = 0
        for _start, _end, source in iter_templates(value):
            found += 1
            yield path, source.strip()
        if value.count("${{") != found:
            yield path, value  # an unterminated template: compiling it reports the error
