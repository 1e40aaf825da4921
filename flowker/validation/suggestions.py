""" "Did you mean" hints for names that are almost right (``endpiont`` -> ``endpoint``).

A candidate is suggested when it is one edit away (optimal string alignment distance:
one insertion, deletion, substitution or swap of two neighbours, case-insensitively;
for names longer than two characters, so ``x`` does not suggest ``y``), or else when
difflib finds it close (ratio of at least 0.8).
"""

from __future__ import annotations

import difflib
from typing import Iterable

CLOSE_RATIO = 0.8
MAX_NAME = 200  # longer names are not compared (bounded work per unknown field)


def edit_distance_at_most_one(first: str, second: str) -> bool:
    """True when ``first`` and ``second`` differ by at most one edit (swaps count once)."""
    if first == second:
        return True
    if abs(len(first) - len(second)) > 1:
        return False
    if len(first) == len(second):
        differences = [index for index, (a, b) in enumerate(zip(first, second)) if a != b]
        if len(differences) == 1:
            return True
        if len(differences) == 2:
            i, j = differences
            return j == i + 1 and first[i] == second[j] and first[j] == second[i]
        return False
    shorter, longer = (first, second) if len(first) < len(second) else (second, first)
    index = 0
    while index < len(shorter) and shorter[index] == longer[index]:
        index += 1
    return shorter[index:] == longer[index + 1 :]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` was most likely meant to be, or None."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return None
    options = sorted({c for c in candidates if isinstance(c, str) and c != name and len(c) <= MAX_NAME})
    lowered = name.lower()
    for candidate in options:
        if max(len(name), len(candidate)) > 2 and edit_distance_at_most_one(lowered, candidate.lower()):
            return candidate
    close = difflib.get_close_matches(name, options, n=1, cutoff=CLOSE_RATIO)
    return close[0] if close else None


def hint(name: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` or an empty string."""
    found = closest(name, candidates)
    return f" (did you mean {found!r}?)" if found else ""
