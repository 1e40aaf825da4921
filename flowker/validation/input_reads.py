"""Static check of the input an expression reads (``workflow.amount``) against the
trigger's ``inputSchema``.

A read is an error only where the schema is closed enough to know the field cannot be
there: an object schema with ``additionalProperties: false`` (fields in ``properties``
or matching ``patternProperties`` exist), or ``unevaluatedProperties: false`` whose
fields are all declared in its own ``properties`` and ``allOf``/``anyOf``/``oneOf``
branches without ``$ref``. A schema without properties, an open schema, or one built
with ``$ref`` is never second-guessed. Nested reads (``workflow.customer.email``) are
followed through ``properties`` while each level is closed. Webhook triggers also
give ``_webhook`` (method, path, headers...). Each problem points at the read
itself (line and column inside the expression's string) and says "did you mean"
when a property is one edit away.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from flowker.expressions import short_source
from flowker.validation.expression_checks import workflow_expressions
from flowker.validation.input_schema import trigger_input_schema
from flowker.validation.problems import ProblemList
from flowker.validation.suggestions import hint

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = rf"\s*\.\s*{_NAME}|\s*\[\s*(?:\"[^\"\\]*\"|'[^'\\]*')\s*\]"
_READ = re.compile(rf"(?<![\w.])workflow((?:{_SEGMENT})+)")
_SEGMENT_PARTS = re.compile(rf"\s*\.\s*({_NAME})|\s*\[\s*(?:\"([^\"\\]*)\"|'([^'\\]*)')\s*\]")
_STRING_LITERAL = re.compile(r"[rRbB]?(\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')")
# What a webhook trigger adds to the run's input beside the body (flowker.api.webhooks).
WEBHOOK_INPUT = "_webhook"


def input_reads(source: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(text of the read, field names) of each ``workflow.a.b`` / ``workflow["a"]`` read,
    outside string literals; a trailing method call (``.size()``) is not a field."""
    literals = [match.span() for match in _STRING_LITERAL.finditer(source)]
    for match in _READ.finditer(source):
        if any(start <= match.start() < end for start, end in literals):
            continue
        names = [plain or double or single for plain, double, single in _SEGMENT_PARTS.findall(match.group(1))]
        text = match.group(0)
        if source[match.end() :].lstrip().startswith("(") and names:
            names.pop()  # workflow.items.size(): `size` is a method
            text = text[: text.rfind(".")]
        if names:
            yield text.rstrip(), tuple(names)


def check_input_reads(body: dict, problems: ProblemList) -> None:
    found = trigger_input_schema(body)
    if found is None or not isinstance(found[1], dict):
        return
    index, schema = found
    trigger = body["nodes"][index]
    extra = {WEBHOOK_INPUT} if trigger.get("data", {}).get("triggerType") == "webhook" else set()
    for path, source, _template in workflow_expressions(body):
        for text, names in input_reads(source):
            problem = _unknown_read(schema, names, extra)
            if problem is not None:
                problems.add(path, f"expression `{short_source(source)}` reads {problem}", within=text)


def _unknown_read(schema: dict, names: tuple[str, ...], top_level_extra: set[str]) -> str | None:
    level: Any = schema
    for depth, name in enumerate(names):
        if depth == 0 and name in top_level_extra:
            return None
        if not isinstance(level, dict):
            return None
        known = closed_fields(level)
        properties: dict = level["properties"] if isinstance(level.get("properties"), dict) else {}
        if known is not None and name not in known and not _pattern_allows(level, name):
            where = "workflow." + ".".join(names[: depth + 1])
            owner = "the input" if depth == 0 else "workflow." + ".".join(names[:depth])
            suggestion = hint(name, known)
            if not suggestion:
                listed = sorted(known)
                shown = ", ".join(listed[:10]) + (", ..." if len(listed) > 10 else "")
                suggestion = f" (it has: {shown or 'no fields'})"
            return f"{where}, but the trigger's inputSchema gives {owner} no field {name!r}{suggestion}"
        if name not in properties:
            return None
        level = properties[name]
    return None


def closed_fields(schema: dict) -> set[str] | None:
    """The fields an object schema allows, when it allows no others; else None."""
    if "$ref" in schema or "$dynamicRef" in schema:
        return None
    fields = set(schema["properties"]) if isinstance(schema.get("properties"), dict) else set()
    if schema.get("additionalProperties") is False:
        return fields
    if schema.get("unevaluatedProperties") is False:
        for keyword in ("allOf", "anyOf", "oneOf"):
            branches = schema.get(keyword)
            for branch in branches if isinstance(branches, list) else []:
                if not isinstance(branch, dict) or "$ref" in branch or "$dynamicRef" in branch:
                    return None
                if isinstance(branch.get("properties"), dict):
                    fields |= set(branch["properties"])
        if any(key in schema for key in ("if", "dependentSchemas", "then", "else")):
            return None
        return fields
    return None


def _pattern_allows(schema: dict, name: str) -> bool:
    patterns = schema.get("patternProperties")
    for pattern in patterns if isinstance(patterns, dict) else {}:
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            return True  # a bad pattern is reported by the schema check
    return False
