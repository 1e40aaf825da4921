"""The JSON Schemas for editors' YAML language servers (``flowker schema --out DIR``).

Every ``*.schema.json`` shipped in ``flowker.specs`` is written as it is, except the
Executor schema, which gains what only the installed plugins know: ``authentication.type``
lists the installed auth types, and for each one an ``if type is T then config matches
T's config schema`` conditional. A config value may be a secret reference
(``{$env: NAME}`` / ``{$file: PATH}``) wherever the type takes a string, as on the server.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any, Mapping

EXECUTOR_SCHEMA = "executor.schema.json"
SECRET_REFERENCE = {
    "description": "A secret reference, resolved when the executor is called: {$env: NAME} or {$file: PATH}.",
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "$env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,199}$"},
        "$file": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
}
_SECRET_REF = {"$ref": "#/$defs/secretReference"}
# Keywords whose values are subschemas (or maps / lists of them) in JSON Schema 2020-12.
_SUBSCHEMA = ("items", "contains", "not", "if", "then", "else", "additionalProperties", "propertyNames")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def shipped_schemas() -> dict[str, dict]:
    """File name -> parsed schema, for every ``*.schema.json`` in the specs package."""
    found = {}
    for entry in sorted(resources.files("flowker.specs").iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".schema.json") and entry.is_file():
            found[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
    return found


def editor_schemas(auth_types: Mapping[str, Any]) -> dict[str, dict]:
    """The schemas to write, by file name; ``auth_types`` is the registry's (name -> type)."""
    schemas = shipped_schemas()
    if EXECUTOR_SCHEMA in schemas:
        schemas[EXECUTOR_SCHEMA] = with_auth_types(schemas[EXECUTOR_SCHEMA], auth_types)
    return schemas


def with_auth_types(schema: dict, auth_types: Mapping[str, Any]) -> dict:
    """The Executor schema with one ``if/then`` on ``authentication.type`` per auth type."""
    schema = copy.deepcopy(schema)
    definitions = schema.setdefault("$defs", {})
    definitions.setdefault("secretReference", SECRET_REFERENCE)
    authentication = schema["properties"]["authentication"]
    names = sorted(auth_types)
    authentication["properties"]["type"] = {
        **authentication["properties"]["type"],
        "enum": names,
        "description": "An installed auth type: " + ", ".join(names),
    }
    conditionals = []
    for name in names:
        auth_type = auth_types[name]
        config = _embedded(copy.deepcopy(auth_type.config_schema), f"auth_{name}_", definitions)
        description = getattr(auth_type, "description", "")
        if description:
            config = {"description": description, **config}
        conditionals.append(
            {
                "if": {"required": ["type"], "properties": {"type": {"const": name}}},
                "then": {"properties": {"config": config}},
            }
        )
    if conditionals:
        authentication["allOf"] = authentication.get("allOf", []) + conditionals
    return schema


def _embedded(config: dict, prefix: str, definitions: dict) -> dict:
    """A plugin's config schema made fit to sit inside the Executor schema: its own
    ``$defs`` move to the root under ``prefix`` (references follow), and strings also
    take a secret reference."""
    config.pop("$schema", None)
    config.pop("$id", None)
    own = config.pop("$defs", None)
    renamed = {f"#/$defs/{key}": f"#/$defs/{prefix}{key}" for key in own or {}}
    _rewrite(config, renamed)
    for key, value in (own or {}).items():
        _rewrite(value, renamed)
        definitions[prefix + key] = _accept_references(value)
    return _accept_references(config)


def _rewrite(value: Any, renamed: dict[str, str]) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            reference = item.get("$ref")
            if isinstance(reference, str):
                for old, new in renamed.items():
                    if reference == old or reference.startswith(old + "/"):
                        item["$ref"] = new + reference[len(old) :]
                        break
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _accept_references(schema: Any) -> Any:
    """``schema`` where every subschema that takes a string also takes a secret reference."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    for key in _SUBSCHEMA:
        if isinstance(result.get(key), dict):
            result[key] = _accept_references(result[key])
    for key in _SUBSCHEMA_MAPS:
        if isinstance(result.get(key), dict):
            result[key] = {name: _accept_references(value) for name, value in result[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(result.get(key), list):
            result[key] = [_accept_references(value) for value in result[key]]
    declared = result.get("type")
    if declared == "string" or (isinstance(declared, list) and "string" in declared):
        return {"anyOf": [result, _SECRET_REF]}
    return result
