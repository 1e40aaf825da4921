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
from flowker.validation.problems import ProblemList

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
                problems.add(path + (key,), f"unknown field {key!r}", at_key=True)
        return
    if validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance:
                problems.add(path, f"missing required field {name!r}")
        return
    custom = error.schema.get(CUSTOM_MESSAGE) if isinstance(error.schema, dict) else None
    if validator == "propertyNames" or "propertyNames" in error.relative_schema_path:
        problems.add(path, custom or "has a field name that is too long or not allowed")
        return
    if validator == "exclusiveMinimum":
        problems.add(path, f"must be greater than {error.validator_value}")
        return
    if custom and validator in ("pattern", "minLength", "maxLength", "oneOf"):
        message = custom
    elif validator in _DESCRIBED:
        message = describe_error(error)
    else:
        message = f"is not valid ({validator})"
    field = path[-1] if path and isinstance(path[-1], str) else None
    problems.add(path, f"{field!r} {message}" if field else message)
