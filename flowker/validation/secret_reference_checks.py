"""Secret references a spec may hold (DESIGN §6): the same rules the server applies when
a spec is saved, so ``flowker validate`` and ``flowker run`` refuse what the server would,
pinned to ``file:line:column``."""

from __future__ import annotations

from typing import Iterable

from flowker.security.secret_policy import SecretReferencePolicy, reference_refusals
from flowker.validation.documents import EXECUTOR
from flowker.validation.problems import ProblemList


def secret_reference_refusals(kind: str, body: dict, policy: SecretReferencePolicy) -> Iterable[tuple[tuple, str]]:
    """(path, rule broken) for each reference the policy refuses: anywhere in an executor's
    auth config, and in workflow triggers' ``verify_token`` and signing ``auth.secret``."""
    if not isinstance(body, dict):
        return
    if kind == EXECUTOR:
        authentication = body.get("authentication")
        if isinstance(authentication, dict) and isinstance(authentication.get("config"), dict):
            yield from reference_refusals(authentication["config"], policy, ("authentication", "config"))
        return
    nodes = body.get("nodes")
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        data = node.get("data") if isinstance(node, dict) else None
        if not (isinstance(data, dict) and node.get("type") == "trigger"):
            continue
        if "verify_token" in data:
            yield from reference_refusals(data["verify_token"], policy, ("nodes", index, "data", "verify_token"))
        auth = data.get("auth")
        if isinstance(auth, dict) and "secret" in auth:
            yield from reference_refusals(auth["secret"], policy, ("nodes", index, "data", "auth", "secret"))


def check_secret_references(kind: str, body: dict, policy: SecretReferencePolicy, problems: ProblemList) -> None:
    for path, refusal in secret_reference_refusals(kind, body, policy):
        problems.add(path, refusal)
