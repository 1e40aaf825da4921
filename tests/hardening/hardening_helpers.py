"""Helpers shared by the hardening tests: settings, canaries and the leak finder."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from app_factory import app_settings

API_KEY = "hardening-key-0123456789abcdef-0123"
SECOND_KEY = "hardening-rotated-key-fedcba9876543210"
SECRET_KEY = "q0cBSlwPOlVEa5hDxZ1qQ2hgXnlo0mX3M8GgR5S6qzU="  # a test-only Fernet key


def make_settings(database_url: str, **overrides):
    return app_settings(database_url, **{"secret_key": SECRET_KEY, "api_keys": f"ci-bot:{API_KEY}", **overrides})


def canary(label: str) -> str:
    """A random secret that is unmistakable in any text, with characters that need
    URL-encoding and JSON-escaping (so those encodings are really exercised)."""
    return f'cn{label}-{secrets.token_urlsafe(18)}+/=&%"'


def _base64_forms(raw: bytes) -> set[str]:
    """base64 of ``raw`` (standard and URL-safe), and the characters of it that do not
    depend on what precedes ``raw`` in a larger blob (at each of the three alignments)."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        start = -(-offset * 8 // 6)
        end = (offset + len(raw)) * 8 // 6
        core = encoded[start:end]
        if len(core) >= 16:
            forms.add(core)
            forms.add(core.replace("+", "-").replace("/", "_"))
    full = base64.b64encode(raw).decode()
    forms.update({full, full.rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    return forms


def encodings(secret: str) -> dict[str, str]:
    """Every form of ``secret`` to look for, by a name that says which encoding it is."""
    forms = {
        "raw": secret,
        "url-encoded": quote(secret, safe=""),
        "url-encoded (path)": quote(secret),
        "form-encoded": quote_plus(secret),
        "json-escaped": json.dumps(secret)[1:-1],
    }
    for index, form in enumerate(sorted(_base64_forms(secret.encode()))):
        forms[f"base64 #{index}"] = form
    return forms


@dataclass
class Canaries:
    """Named canaries, plus ``user:password`` pairs whose base64 must not appear either."""

    values: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)

    def new(self, label: str) -> str:
        value = canary(label)
        self.values[label] = value
        return value

    def add_pair(self, label: str, username: str, password: str) -> None:
        self.pairs[label] = f"{username}:{password}"

    def needles(self) -> list[tuple[str, str, str]]:
        """(canary label, encoding name, text) for every form of every canary."""
        found = []
        for label, value in self.values.items():
            for name, form in encodings(value).items():
                found.append((label, name, form))
        for label, pair in self.pairs.items():
            for name, form in encodings(pair).items():
                if name.startswith("base64"):
                    found.append((label + " (user:pass)", name, form))
        return found


@dataclass
class Leak:
    where: str
    canary: str
    encoding: str
    context: str

    def __str__(self) -> str:
        return f"{self.canary} ({self.encoding}) in {self.where}: ...{self.context}..."


def find_leaks(needles, haystacks: dict) -> list[Leak]:
    """Every needle found in every haystack (str or bytes), with a little context."""
    leaks = []
    for where, haystack in haystacks.items():
        if isinstance(haystack, (bytes, bytearray)):
            text = bytes(haystack).decode("latin-1")
        else:
            text = str(haystack)
        for label, encoding, needle in needles:
            position = text.find(needle)
            if position >= 0:
                context = text[max(0, position - 80) : position + len(needle) + 40]
                leaks.append(Leak(where, label, encoding, context.replace("\n", "\\n")))
    return leaks


def leak_report(leaks: list[Leak], per_place: int = 6) -> str:
    """A readable summary: leaks grouped by the kind of place (responses, logs, files)."""
    groups: dict[str, list[Leak]] = {}
    for leak in leaks:
        groups.setdefault(leak.where.split(" #")[0], []).append(leak)
    lines = [f"{len(leaks)} leak(s)"]
    for place, found in groups.items():
        lines.append(f"== {place}: {len(found)}")
        seen = set()
        for leak in found:
            key = (leak.canary.split("-")[0], leak.encoding)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"  {leak}")
            if len(seen) >= per_place:
                break
    return "\n".join(lines)
