"""What the server enforces beyond the spec files' JSON Schemas, written into the OpenAPI
document so generated clients and validators (schemathesis among them) agree with it.

* No string or key of a request holds a NUL character (PostgreSQL cannot store one): every
  string schema of a request body or parameter gets a pattern that excludes it, and open
  objects take NUL-free JSON only (:data:`JSON_VALUE`).
* ``authentication.type`` is one of the auth types this server's plugin registry holds.
* A JSON Merge Patch of an executor names only executor fields (:func:`executor_patch`).

Rules no schema can state (a cursor from another list, ``startTime`` after ``endTime``,
a lifecycle state) are listed per operation as ``x-flowker-codes`` on the 400/422
responses instead (see :mod:`flowker.api.openapi`).
"""

from __future__ import annotations

import copy

NUL_FREE = "^[^\\u0000]*$"
# Python's ``.`` (the server validates with Python's re): anything but a newline.
_DOT = "[^\\u0000\\n]"
JSON_VALUE_NAME = "JsonValue"
# No "type": listing all six JSON types states nothing, and client generators cannot
# build a class for a union that refers back to itself; the keywords below still hold.
JSON_TYPES = ["object", "array", "string", "number", "boolean", "null"]
JSON_VALUE = {
    "description": "Any JSON value without NUL characters in its strings or keys",
    "pattern": NUL_FREE,
    "propertyNames": {"pattern": NUL_FREE},
    "items": {"$ref": f"#/components/schemas/{JSON_VALUE_NAME}"},
    "additionalProperties": {"$ref": f"#/components/schemas/{JSON_VALUE_NAME}"},
}


def nul_free_pattern(pattern: str) -> str:
    """``pattern`` with NUL taken out of whatever it admitted (``.``, ``\\S``, ``[^...]``)."""
    out = []
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            pair = pattern[index : index + 2]
            out.append("[^\\s\\u0000]" if pair == "\\S" and not in_class else pair)
            index += 2
            continue
        if in_class:
            in_class = char != "]"
            out.append(char)
        elif char == "[":
            in_class = True
            if pattern.startswith("[^", index):
                out.append("[^\\u0000")
                index += 2
                continue
            out.append(char)
        elif char == ".":
            out.append(_DOT)
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _is_string(schema: dict) -> bool:
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _is_open_object(schema: dict) -> bool:
    kind = schema.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    return is_object and "additionalProperties" not in schema and "properties" not in schema


def forbid_nul(schema):
    """A copy of ``schema`` whose strings, keys and open objects exclude NUL."""
    if isinstance(schema, list):
        return [forbid_nul(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: forbid_nul(value) for key, value in schema.items()}
    if isinstance(result.get("pattern"), str):
        result["pattern"] = nul_free_pattern(result["pattern"])
    elif _is_string(result) and "enum" not in result and "const" not in result and "format" not in result:
        result["pattern"] = NUL_FREE
    if _is_open_object(result):
        result["additionalProperties"] = {"$ref": f"#/components/schemas/{JSON_VALUE_NAME}"}
    if "propertyNames" in result or result.get("additionalProperties") not in (None, False):
        names = dict(result.get("propertyNames") or {})
        names["pattern"] = nul_free_pattern(names["pattern"]) if "pattern" in names else NUL_FREE
        result["propertyNames"] = names
    return result


def any_json(schema: dict) -> dict:
    """``schema`` without a ``type`` naming every JSON type (the spec files' jsonValue), which
    constrains nothing but stops client generators; every other keyword still applies."""
    if sorted(schema.get("type") or ()) == sorted(JSON_TYPES):
        schema = {key: value for key, value in schema.items() if key != "type"}
        schema.setdefault("description", "Any JSON value")
    return schema


def with_auth_types(executor_spec: dict, auth_types) -> dict:
    """The executor spec schema with ``authentication.type`` limited to ``auth_types``."""
    schema = copy.deepcopy(executor_spec)
    type_schema = schema["properties"]["authentication"]["properties"]["type"]
    type_schema.pop("pattern", None)
    type_schema["enum"] = sorted(auth_types)
    return schema


def executor_patch(executor_spec: dict) -> dict:
    """JSON Merge Patch (RFC 7386) of an executor: executor fields only, every one optional;
    ``null`` removes an optional field; ``authentication`` may change its type or config."""
    required = set(executor_spec.get("required", ()))
    properties = {}
    for name, schema in executor_spec["properties"].items():
        if name == "authentication":
            auth = schema["properties"]
            schema = {
                "type": "object",
                "additionalProperties": False,
                "properties": {"type": auth["type"], "config": {**auth["config"], "type": ["object", "null"]}},
            }
        elif name not in required and name != "kind":
            schema = {"anyOf": [schema, {"type": "null"}]}
        properties[name] = schema
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "description": "JSON Merge Patch (RFC 7386) of an executor spec; the result must be a valid executor.",
    }
