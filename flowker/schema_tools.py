"""Small helpers shared by the auth and action type contracts: config schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from flowker.validation.suggestions import hint

SECRET_REFERENCE_KEYS = ("$env", "$file", "$encrypted")
# Stands in for a secret reference while a config is checked against its schema.
SECRET_PLACEHOLDER = "<secret-reference>"


def is_secret_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SECRET_REFERENCE_KEYS


def replace_secret_references(value: Any) -> Any:
    """A copy where every ``{$env|$file|$encrypted: ...}`` is a placeholder string."""
    if is_secret_reference(value):
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {key: replace_secret_references(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_secret_references(item) for item in value]
    return value


def compile_config_schema(schema: dict) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator for a plugin's config schema (checked first)."""
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def config_problems(validator: jsonschema.protocols.Validator, config: Any) -> list[tuple[str, str]]:
    """Every schema problem as (json path suffix, message), one per failing location.

    Messages describe what is wrong without echoing the offending value, since config
    values may be secrets.
    """
    candidate = replace_secret_references(config)
    by_path: dict[tuple, list] = {}
    for error in validator.iter_errors(candidate):
        by_path.setdefault(tuple(error.absolute_path), []).append(error)
    problems = []
    for _path, errors in sorted(by_path.items(), key=lambda item: [str(p) for p in item[0]]):
        error = best_match(errors)
        problems.append((_json_path(error.absolute_path), describe_error(error)))
    return problems


def _json_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe_error(error: jsonschema.ValidationError) -> str:
    """A value-free description of a validation error."""
    validator = error.validator
    schema_value = error.validator_value
    if validator == "required":
        missing = [name for name in schema_value if isinstance(error.instance, dict) and name not in error.instance]
        names = missing or list(schema_value)
        return f"missing required field {', '.join(repr(name) for name in names)}"
    if validator == "additionalProperties":
        extra = (
            sorted(set(error.instance) - set(error.schema.get("properties", {})))
            if isinstance(error.instance, dict)
            else []
        )
        if not extra:
            return "unknown field"
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return "unknown field " + ", ".join(repr(name) + hint(name, known) for name in extra)
    if validator == "type":
        return f"must be of type {schema_value if isinstance(schema_value, str) else ' or '.join(schema_value)}"
    if validator == "enum":
        return f"must be one of {', '.join(repr(v) for v in schema_value)}"
    if validator == "const":
        return f"must be {schema_value!r}"
    if validator in (
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
    ):
        words = {
            "minLength": "at least {} characters long",
            "maxLength": "at most {} characters long",
            "minItems": "a list of at least {} items",
            "maxItems": "a list of at most {} items",
            "minimum": "at least {}",
            "maximum": "at most {}",
            "minProperties": "an object with at least {} fields",
            "maxProperties": "an object with at most {} fields",
        }
        return "must be " + words[validator].format(schema_value)
    if validator == "pattern":
        return f"must match the pattern {schema_value}"
    if validator == "format":
        return f"must be a valid {schema_value}"
    return error.message if not isinstance(error.instance, str) else f"is not valid ({validator})"
