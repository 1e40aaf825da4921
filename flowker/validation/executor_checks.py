"""Checks of an executor document beyond its schema: the auth type and its config
(from the registry), endpoint names, the base URL, and secrets kept out of git.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flowker.validation.suggestions import hint
from flowker.validation.problems import ProblemList, parse_path_suffix

FILE_SECRET_REFERENCE_KEYS = ("$env", "$file")


def known_list(names) -> str:
    names = sorted(names)
    shown = ", ".join(names[:20])
    return shown + (", ..." if len(names) > 20 else "") if names else "none"


def check_executor(body: dict, registry, problems: ProblemList, *, from_file: bool) -> None:
    _check_base_url(body.get("baseUrl"), problems)
    _check_endpoints(body.get("endpoints"), problems)
    authentication = body.get("authentication")
    if registry is not None and isinstance(authentication, dict):
        _check_authentication(authentication, registry, problems, from_file=from_file)


def _check_base_url(base_url, problems: ProblemList) -> None:
    if not isinstance(base_url, str):
        return
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError as exc:
        problems.add(("baseUrl",), f"'baseUrl' is not a valid URL: {exc}")
        return
    if parts.scheme in ("http", "https") and not parts.hostname:
        problems.add(("baseUrl",), "'baseUrl' has no host")
    if port == 0:
        problems.add(("baseUrl",), "'baseUrl' has port 0")


def _check_endpoints(endpoints, problems: ProblemList) -> None:
    if not isinstance(endpoints, list):
        return
    first: dict[str, int] = {}
    for index, endpoint in enumerate(endpoints):
        name = endpoint.get("name") if isinstance(endpoint, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.add(
                ("endpoints", index, "name"),
                f"duplicate endpoint name {name!r} (first used by endpoints[{first[name]}])",
            )
        else:
            first[name] = index


def _check_authentication(authentication: dict, registry, problems: ProblemList, *, from_file: bool) -> None:
    type_name = authentication.get("type")
    if not isinstance(type_name, str):
        return
    auth_type = registry.auth_types.get(type_name)
    if auth_type is None:
        problems.add(
            ("authentication", "type"),
            f"unknown auth type {type_name!r}{hint(type_name, registry.auth_types)} (known: {known_list(registry.auth_types)})",
        )
        return
    config = authentication.get("config", {})
    if not isinstance(config, dict):
        return  # the schema check reports it
    base = ("authentication", "config")
    for suffix, message in auth_type.validate_config(config):
        problems.add(base + parse_path_suffix(suffix), f"{type_name} auth config: {message}")
    if from_file:
        for secret in auth_type.secret_fields:
            value = config.get(secret)
            if value is not None and not _is_file_reference(value):
                # Never echo the value: it is (probably) a real secret.
                problems.add(
                    base + (secret,),
                    f"secret {secret!r} must be a reference in a spec file: "
                    "{$env: NAME} or {$file: PATH}, not a literal value",
                )


def _is_file_reference(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FILE_SECRET_REFERENCE_KEYS
