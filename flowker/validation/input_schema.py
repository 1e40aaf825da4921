"""A trigger's ``inputSchema`` (JSON Schema 2020-12): checked as a schema when the
workflow is validated or saved, and used to refuse a run's input before anything is
stored (:class:`InputValidator`, FLK-0511).

Problems of an input are ``{path, message}``: ``path`` is a JSON pointer (RFC 6901:
``/customer/email``, ``/items/0/price``; ``""`` is the input itself). A missing
required field and an unknown field point at that field. Messages describe the rule,
never the value given. Only local ``$ref`` (``#/$defs/...``) are allowed: nothing is
fetched. ``format`` is checked (``email``, ``date``, ``uri``...), as for auth configs.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import jsonschema
import jsonschema_rs
import referencing
import referencing.exceptions
from jsonschema.exceptions import best_match

from flowker.schema_tools import describe_error
from flowker.validation.problems import ProblemList, Rank
from flowker.validation.suggestions import hint

INPUT_SCHEMA = "inputSchema"
# A refusal lists at most this many problems (an input of 10,000 bad items is one answer).
MAX_DETAILS = 100
_META = jsonschema.Draft202012Validator(
    jsonschema.Draft202012Validator.META_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def trigger_input_schema(body: Any) -> tuple[int, Any] | None:
    """(node index, inputSchema) of the workflow's first trigger declaring one, else None."""
    nodes = body.get("nodes") if isinstance(body, dict) else None
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict) or node.get("type") != "trigger":
            continue
        data = node.get("data")
        if isinstance(data, dict) and INPUT_SCHEMA in data:
            return index, data[INPUT_SCHEMA]
    return None


def json_pointer(parts) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def check_input_schema(body: dict, problems: ProblemList) -> None:
    """Problems of the trigger's inputSchema as a schema, at its own lines."""
    found = trigger_input_schema(body)
    if found is None:
        return
    index, schema = found
    base = ("nodes", index, "data", INPUT_SCHEMA)
    if not isinstance(schema, dict):
        return  # the workflow schema says it must be an object
    reported = 0
    for error in _META.iter_errors(schema):
        if error.context:
            error = best_match([error])
        path = base + tuple(error.absolute_path)
        problems.add(path, f"inputSchema is not a valid JSON Schema: {_schema_message(error)}", rank=Rank.SCHEMA)
        reported += 1
        if reported >= MAX_DETAILS:
            return
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared]
    if declared is not None and all(t in _JSON_TYPES for t in types) and "object" not in types:
        problems.add(base + ("type",), "inputSchema must accept an object: a run's input is always a JSON object")
    broken = False
    anchors = {value["$anchor"] for _path, value in _subschemas(schema) if isinstance(value.get("$anchor"), str)}
    for path, reference in _references(schema):
        problem = _reference_problem(schema, reference, anchors)
        if problem:
            broken = True
            problems.add(base + path + ("$ref",), problem)
    if not broken:
        loop = ref_loop(schema)
        if loop is not None:
            problems.add(
                base + loop,
                "this schema refers back to itself through $ref without descending into the input: "
                "applying it would never end",
            )


_JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


def _schema_message(error: jsonschema.ValidationError) -> str:
    path = tuple(error.absolute_path)
    if path and path[-1] == "type" and isinstance(error.instance, str):
        return f"{error.instance!r} is not a JSON type{hint(error.instance, _JSON_TYPES)}: use one of {', '.join(_JSON_TYPES)}"
    if error.validator in ("format", "anyOf", "oneOf", "allOf", "not", "$ref", "$dynamicRef"):
        return _first_line(error.message)
    message = describe_error(error)
    field = error.absolute_path[-1] if error.absolute_path else None
    return f"{field!r} {message}" if isinstance(field, str) else message


def _references(schema: dict) -> Iterator[tuple[tuple, str]]:
    """Every ``$ref`` string in a schema, with the path of the schema holding it."""
    for path, value in _subschemas(schema):
        if isinstance(value.get("$ref"), str):
            yield path, value["$ref"]


def _reference_problem(schema: dict, reference: str, anchors: set) -> str | None:
    if not reference.startswith("#"):
        return f"$ref {reference!r} is not local: only references inside the schema ('#/$defs/...') are allowed"
    pointer = reference[1:]
    if pointer and not pointer.startswith("/"):
        return None if pointer in anchors else f"$ref {reference!r} names no $anchor of the schema"
    target: Any = schema
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return f"$ref {reference!r} points at nothing in the schema"
    return None


# Keywords that apply a subschema to the same value (so a $ref cycle through them alone
# never reaches a smaller part of the input).
_IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas")


def ref_loop(schema: dict) -> tuple | None:
    """The path of a ``$ref`` that closes a cycle of in-place applicators, or None."""
    edges: dict[tuple, list[tuple]] = {}
    for path, value in _subschemas(schema):
        targets = edges.setdefault(path, [])
        reference = value.get("$ref")
        if isinstance(reference, str) and (reference == "#" or reference.startswith("#/")):
            targets.append(tuple(_pointer_parts(reference[1:])))
        for keyword in _IN_PLACE:
            child = value.get(keyword)
            if isinstance(child, dict) and keyword != "dependentSchemas":
                targets.append(path + (keyword,))
            elif isinstance(child, dict):
                targets.extend(path + (keyword, name) for name in child)
            elif isinstance(child, list):
                targets.extend(path + (keyword, index) for index in range(len(child)))
    state: dict[tuple, int] = {}  # 1 on the current path, 2 done
    for start in edges:
        if start in state:
            continue
        stack = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        while stack:  # iterative DFS: each location and edge once
            node, successors = stack[-1]
            following = next(successors, None)
            if following is None:
                state[node] = 2
                stack.pop()
            elif state.get(following) == 1:
                return node
            elif following not in state:
                state[following] = 1
                stack.append((following, iter(edges.get(following, ()))))
    return None


def _pointer_parts(pointer: str) -> list:
    parts: list = []
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        parts.append(int(part) if part.isdigit() else part)
    return parts


# Keywords whose values are data, not schemas: a "$ref" key inside them is no reference.
_DATA_KEYWORDS = ("const", "enum", "default", "examples")


def _subschemas(schema: dict) -> Iterator[tuple[tuple, dict]]:
    pending: list[tuple[tuple, Any]] = [((), schema)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            yield path, value
            pending.extend((path + (key,), child) for key, child in value.items() if key not in _DATA_KEYWORDS)
        elif isinstance(value, list):
            pending.extend((path + (index,), child) for index, child in enumerate(value))


def _reraise_exits(exc: BaseException) -> None:
    # pyo3 panics derive from BaseException; interpreter exits must still go through.
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        raise exc


def _no_retrieval(uri: str):
    raise ValueError(f"{uri} is not fetched: only local references are allowed")


class InputValidator:
    """A compiled inputSchema; :meth:`problems` lists what is wrong with an input.

    Every run of a workflow with an inputSchema checks its input, so the check is made
    by ``jsonschema_rs`` (compiled, microseconds) and only an input it refuses is walked
    again by ``jsonschema`` for value-free messages (about 0.5 ms for a small schema:
    15-20 % of a run's CPU if it ran every time). Where the two disagree (regular
    expression dialects, how strict a ``format`` is), an input either accepts is
    accepted. Neither fetches anything: a remote ``$ref`` fails.
    """

    def __init__(self, schema: dict):
        jsonschema.Draft202012Validator.check_schema(schema)
        # An empty registry that retrieves nothing: a remote $ref fails, never fetches.
        self.validator = jsonschema.Draft202012Validator(
            schema,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            registry=referencing.Registry(),
        )
        try:
            self.fast: Any = jsonschema_rs.Draft202012Validator(schema, validate_formats=True, retriever=_no_retrieval)
        except BaseException as exc:  # noqa: BLE001 - e.g. a reference it cannot resolve, or a Rust panic
            _reraise_exits(exc)
            self.fast = None  # jsonschema decides alone

    def problems(self, instance: Any) -> list[dict]:
        """Every problem as ``{"path": JSON pointer, "message": ...}`` (at most MAX_DETAILS)."""
        if self.fast is not None:
            try:
                if self.fast.is_valid(instance):
                    return []
            except BaseException as exc:  # noqa: BLE001 - a value it cannot take, or a Rust panic
                _reraise_exits(exc)  # otherwise jsonschema decides
        found: list[dict] = []
        try:
            errors = list(itertools.islice(self.validator.iter_errors(instance), MAX_DETAILS))
        except RecursionError:  # a $ref loop the static check could not see ($anchor, $dynamicRef)
            return [{"path": "", "message": "the trigger's inputSchema could not be applied: a $ref loops"}]
        except referencing.exceptions.Unresolvable:  # e.g. under a nested $id the static check does not model
            return [{"path": "", "message": "the trigger's inputSchema could not be applied: a $ref does not resolve"}]
        for error in errors:
            if error.context:
                error = best_match([error])
            found.extend(_details(error))
            if len(found) >= MAX_DETAILS:
                return found[:MAX_DETAILS]
        return found


def _details(error: jsonschema.ValidationError) -> list[dict]:
    path = tuple(error.absolute_path)
    validator = error.validator
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    known: dict = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    if validator == "required" and isinstance(instance, dict):
        return [
            {"path": json_pointer(path + (name,)), "message": "is required"}
            for name in error.validator_value
            if name not in instance
        ]
    if validator == "additionalProperties" and isinstance(instance, dict) and error.validator_value is False:
        extra = [key for key in instance if key not in known and not _matches_pattern(schema, key)]
        return [
            {"path": json_pointer(path + (key,)), "message": f"is not an allowed field{hint(key, known)}"}
            for key in extra
        ]
    if validator == "unevaluatedProperties":
        return [{"path": json_pointer(path), "message": _first_line(error.message)}]
    words = _VALUE_FREE.get(str(validator))
    message = words.format(error.validator_value) if words else describe_error(error)
    return [{"path": json_pointer(path), "message": message}]


# Validators whose jsonschema messages quote the value given (the input may hold personal
# data): worded from the rule alone. describe_error words the common ones the same way.
_VALUE_FREE = {
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "multipleOf": "must be a multiple of {}",
    "uniqueItems": "must not hold the same item twice",
    "not": "matches a schema it must not match",
    "contains": "holds no item the schema requires",
    "minContains": "holds too few items of the required kind",
    "maxContains": "holds too many items of the required kind",
    "dependentRequired": "lacks a field another field requires",
    "propertyNames": "has a field name that is not allowed",
    "None": "is not allowed",  # a `false` subschema
}


def _matches_pattern(schema: dict, key: str) -> bool:
    import re

    patterns = schema.get("patternProperties")
    if not isinstance(patterns, dict):
        return False
    for pattern in patterns:
        try:
            if re.search(pattern, key):
                return True
        except re.error:
            continue
    return False


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "is not valid"
    return line if len(line) <= 300 else line[:297] + "..."
