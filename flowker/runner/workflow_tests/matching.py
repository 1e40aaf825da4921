"""Subset matching for fixtures' ``match`` and cases' ``expect.output``, with reasons.

Mappings match when every key given is present and matches; lists when they have the
same length and match item by item; other values when they are equal (``1 == 1.0``,
but ``true`` is not ``1``).
"""

from __future__ import annotations

import json
from typing import Any

MAX_SHOWN = 120


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Why ``actual`` does not contain ``expected``; an empty list when it does."""
    where = path or "the value"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {shown(actual)}"]
        found: list[str] = []
        for key, value in expected.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in actual:
                found.append(f"{child}: missing (expected {shown(value)})")
            else:
                found.extend(mismatches(value, actual[key], child))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {shown(actual)}"]
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {len(actual)}: {shown(actual)}"]
        found = []
        for index, (item, other) in enumerate(zip(expected, actual)):
            found.extend(mismatches(item, other, f"{path}[{index}]"))
        return found
    if not same_scalar(expected, actual):
        return [f"{where}: expected {shown(expected)}, got {shown(actual)}"]
    return []


def same_scalar(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return bool(expected == actual)


def shown(value: Any) -> str:
    """A value for a message: compact JSON, cut at MAX_SHOWN characters."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."
