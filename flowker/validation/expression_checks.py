"""Expression checks: CEL syntax, known variables and node references.

``condition`` fields (conditional nodes, edges) are bare CEL; every other string in
node data may hold ``${{ expr }}`` templates. Compiling goes through
:mod:`flowker.expressions`, the same code the runner uses.
"""

from __future__ import annotations

from flowker.expressions import ExpressionError, compile_condition, iter_expressions, node_references
from flowker.validation.problems import ProblemList, parse_path_suffix

MAX_MESSAGE = 300
# Compiling costs tens of microseconds per expression: a 1 MiB body could hold 100 000
# of them and keep a worker busy for seconds at every create, activate and first run.
MAX_EXPRESSIONS = 5000


def check_expressions(body: dict, known_nodes: set[str], problems: ProblemList) -> None:
    found = list(workflow_expressions(body))
    if len(found) > MAX_EXPRESSIONS:
        problems.add(("nodes",), f"the workflow holds {len(found)} expressions; at most {MAX_EXPRESSIONS} are allowed")
        return
    for path, source, template in found:
        check_expression(path, source, known_nodes, problems, template=template)


def workflow_expressions(body: dict):
    """(path, source, is a template) of every expression, uncompiled."""
    nodes = body["nodes"] if isinstance(body.get("nodes"), list) else []
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("data"), dict):
            continue
        data = node["data"]
        base = ("nodes", index, "data")
        templated = data
        if node.get("type") == "conditional":
            templated = {key: value for key, value in data.items() if key != "condition"}
            if isinstance(data.get("condition"), str):
                yield base + ("condition",), data["condition"], False
        elif node.get("type") == "trigger":
            # A trigger's inputSchema is a JSON Schema and a schedule's input fixed data:
            # "${{" in them is text, not a template.
            templated = {key: value for key, value in data.items() if key not in ("inputSchema", "input")}
        for suffix, source in iter_expressions(templated):
            yield base + parse_path_suffix(suffix), source, True
    edges = body["edges"] if isinstance(body.get("edges"), list) else []
    for index, edge in enumerate(edges):
        if isinstance(edge, dict) and isinstance(edge.get("condition"), str):
            yield ("edges", index, "condition"), edge["condition"], False


def check_expression(
    path, source: str, known_nodes: set[str], problems: ProblemList, *, template: bool = False
) -> None:
    try:
        compile_condition(source)
    except ExpressionError as exc:
        message = exc.message
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE].rstrip() + "..."
        if exc.column is not None:
            message += f" (column {exc.column} of the expression)"
        if template and "${{" in source:
            message = "unterminated ${{ }} template: " + message
        problems.add(path, message)
    # Node references are checked even when compiling failed: every problem is reported.
    for reference in sorted(node_references(source) - known_nodes):
        problems.add(path, f"expression `{_short(source)}` refers to node {reference!r}, which does not exist")


def _short(source: str) -> str:
    source = " ".join(source.split())
    return source if len(source) <= 80 else source[:77] + "..."
