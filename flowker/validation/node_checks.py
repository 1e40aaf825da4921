"""Checks of workflow nodes against things outside the workflow: action types in
the registry, executors and their endpoints, and webhook trigger sanity.
"""

from __future__ import annotations

import re
from typing import Mapping

from flowker.validation.executor_checks import known_list
from flowker.validation.problems import ProblemList, parse_path_suffix
from flowker.validation.suggestions import hint

_PATH_PARAMETER = re.compile(r"\{([^{}/]+)\}")


def _nodes_of_type(body: dict, node_type: str):
    nodes = body.get("nodes")
    if not isinstance(nodes, list):
        return
    for index, node in enumerate(nodes):
        if isinstance(node, dict) and node.get("type") == node_type and isinstance(node.get("data"), dict):
            yield index, node["data"]


def check_actions(body: dict, registry, problems: ProblemList) -> None:
    for index, data in _nodes_of_type(body, "action"):
        type_name = data.get("actionType")
        if not isinstance(type_name, str):
            continue
        action_type = registry.action_types.get(type_name)
        if action_type is None:
            problems.add(
                ("nodes", index, "data", "actionType"),
                f"unknown action type {type_name!r}{hint(type_name, registry.action_types)} "
                f"(known: {known_list(registry.action_types)})",
            )
            continue
        config = {key: value for key, value in data.items() if key != "actionType"}
        for suffix, message in action_type.validate_config(config):
            problems.add(("nodes", index, "data") + parse_path_suffix(suffix), f"{type_name} action: {message}")


def endpoint_paths(executor) -> dict[str, str]:
    """Endpoint name -> path of an executor given as a document or a REST body."""
    body = getattr(executor, "body", executor)
    endpoints = body.get("endpoints") if isinstance(body, Mapping) else None
    found: dict[str, str] = {}
    for endpoint in endpoints if isinstance(endpoints, list) else []:
        if isinstance(endpoint, Mapping) and isinstance(endpoint.get("name"), str):
            found.setdefault(endpoint["name"], endpoint["path"] if isinstance(endpoint.get("path"), str) else "")
    return found


def check_executor_references(body: dict, executors: Mapping, problems: ProblemList) -> None:
    """Executor nodes name an executor (by name or id) and one of its endpoints."""
    for index, data in _nodes_of_type(body, "executor"):
        reference = data.get("executor")
        if not isinstance(reference, str):
            continue
        base = ("nodes", index, "data")
        executor = executors.get(reference)
        if executor is None:
            problems.add(
                base + ("executor",),
                f"unknown executor {reference!r}{hint(reference, executors)} (known: {known_list(executors)})",
            )
            continue
        endpoint = data.get("endpoint")
        paths = endpoint_paths(executor)
        if not isinstance(endpoint, str):
            continue
        if endpoint not in paths:
            problems.add(
                base + ("endpoint",),
                f"executor {reference!r} has no endpoint {endpoint!r}{hint(endpoint, paths)} (it has: {known_list(paths)})",
            )
            continue
        _check_path_params(base, endpoint, paths[endpoint], data.get("pathParams"), problems)


def _check_path_params(base, endpoint: str, path: str, path_params, problems: ProblemList) -> None:
    wanted = set(_PATH_PARAMETER.findall(path))
    given = set(path_params) if isinstance(path_params, dict) else set()
    for name in sorted(wanted - given):
        problems.add(base, f"endpoint {endpoint!r} ({path}) needs pathParams.{name}")
    for name in sorted(given - wanted):
        problems.add(base + ("pathParams", name), f"endpoint {endpoint!r} ({path}) has no {{{name}}} placeholder")


def check_triggers(body: dict, problems: ProblemList, *, from_file: bool) -> None:
    """Webhook paths that route cleanly; manual and schedule triggers without webhook fields;
    in files, the webhook's verify_token only as a secret reference."""
    for index, data in _nodes_of_type(body, "trigger"):
        base = ("nodes", index, "data")
        if from_file and isinstance(data.get("verify_token"), str):
            problems.add(
                base + ("verify_token",),
                "secret 'verify_token' must be a reference in a spec file: {$env: NAME} or {$file: PATH}, not a literal value",
            )
        auth = data.get("auth")
        if isinstance(auth, dict):
            _check_webhook_auth(base + ("auth",), auth, problems, from_file=from_file)
        if data.get("triggerType") in ("manual", "schedule"):
            for field in ("path", "method", "verify_token", "auth"):
                if field in data:
                    problems.add(base + (field,), f"{field!r} only applies to webhook triggers", at_key=True)
            continue
        path = data.get("path")
        if data.get("triggerType") != "webhook" or not isinstance(path, str):
            continue
        segments = path.split("/")[1:]
        if any(segment == "" for segment in segments):
            problems.add(base + ("path",), "webhook path has an empty segment ('//' or a trailing '/')")
        if any(segment in (".", "..") for segment in segments):
            problems.add(base + ("path",), "webhook path may not contain '.' or '..' segments")


def _check_webhook_auth(base: tuple, auth: dict, problems: ProblemList, *, from_file: bool) -> None:
    if from_file and isinstance(auth.get("secret"), str):
        problems.add(
            base + ("secret",),
            "secret 'auth.secret' must be a reference in a spec file: {$env: NAME} or {$file: PATH}, not a literal value",
        )
    if "header" in auth and auth.get("scheme") != "hmac-sha256":
        problems.add(base + ("header",), "'header' only applies to scheme hmac-sha256", at_key=True)


def webhook_route(body: dict) -> tuple[int, str, str] | None:
    """(node index, method, path) of the workflow's webhook trigger, if it has one."""
    for index, data in _nodes_of_type(body, "trigger"):
        if (
            data.get("triggerType") == "webhook"
            and isinstance(data.get("path"), str)
            and isinstance(data.get("method"), str)
        ):
            return index, data["method"], data["path"]
    return None
