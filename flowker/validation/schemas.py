"""The JSON Schemas in ``flowker.specs`` (the top-level ``specs/`` folder) and the
schema check that turns jsonschema errors into located, value-free problems.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import jsonschema
from jsonschema.exceptions import best_match

from flowker.schema_tools import describe_error
from flowker.validation.documents import EXECUTOR, WORKFLOW, WORKFLOW_TEST
from flowker.validation.problems import ProblemList, Rank
from flowker.validation.suggestions import closest, hint

# A schema keyword of ours: the message for a value failing that (sub)schema's
# pattern or length, clearer than quoting a regular expression.
CUSTOM_MESSAGE = "x-flowker-message"

SCHEMA_FILES = {
    WORKFLOW: "workflow.schema.json",
    EXECUTOR: "executor.schema.json",
    WORKFLOW_TEST: "workflow-test.schema.json",
}

# Validators whose messages schema_tools.describe_error words without echoing values.
_DESCRIBED = frozenset(
    {
        "required",
        "type",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "pattern",
        "format",
    }
)


@functools.lru_cache(maxsize=None)
def schema_document(kind: str) -> dict:
    """The parsed schema for ``Workflow`` or ``Executor``, read from the installed package."""
    text = resources.files("flowker.specs").joinpath(SCHEMA_FILES[kind]).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def schema_validator(kind: str) -> jsonschema.Draft202012Validator:
    """A compiled validator, built once per process."""
    schema = schema_document(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_schema(kind: str, body: dict, problems: ProblemList) -> bool:
    """Add every schema problem of ``body``; True when there were none.

    Each error jsonschema yields is one problem; ``oneOf``/``anyOf`` errors are
    narrowed with ``best_match`` to the most relevant sub-error.
    """
    before = len(problems)
    document = {"kind": kind, **body}
    for error in schema_validator(kind).iter_errors(document):
        if error.context:
            error = best_match([error])
        _report(error, problems)
    return len(problems) == before


def _report(error: jsonschema.ValidationError, problems: ProblemList) -> None:
    path = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                message = f"unknown field {key!r}{hint(key, known)}"
                problems.add(path + (key,), message, at_key=True, rank=Rank.UNKNOWN_FIELD)
        return
    if validator == "required" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        strays = [key for key in error.instance if isinstance(key, str) and key not in known]
        for name in error.validator_value:
            if name not in error.instance:
                misspelt = [key for key in strays if closest(key, [name]) == name]
                because = f" (is {misspelt[0]!r} a misspelling of it?)" if misspelt else ""
                problems.add(path, f"missing required field {name!r}{because}", rank=Rank.MISSING_FIELD)
        return
    custom = error.schema.get(CUSTOM_MESSAGE) if isinstance(error.schema, dict) else None
    if validator == "propertyNames" or "propertyNames" in error.relative_schema_path:
        problems.add(path, custom or "has a field name that is too long or not allowed", rank=Rank.SCHEMA)
        return
    if validator == "exclusiveMinimum":
        problems.add(path, f"must be greater than {error.validator_value}", rank=Rank.SCHEMA)
        return
    if custom and validator in ("pattern", "minLength", "maxLength", "oneOf"):
        message = custom
    elif validator in _DESCRIBED:
        message = describe_error(error)
        if validator == "enum" and isinstance(error.instance, str):
            message += hint(error.instance, [v for v in error.validator_value if isinstance(v, str)])
    else:
        message = f"is not valid ({validator})"
    field = path[-1] if path and isinstance(path[-1], str) else None
    problems.add(path, f"{field!r} {message}" if field else message, rank=Rank.SCHEMA)
