"""The set of secret values a :class:`~flowker.security.redaction.Redactor` scrubs.

Each value is expanded into every form it could appear in (:func:`encoded_variants`)
and compiled into trie-shaped regular expressions. Values are kept in chunks of
:data:`CHUNK_SIZE`, each compiled once: registering a new token recompiles only the
newest chunk, so a busy process that keeps obtaining OIDC tokens does not recompile
everything each time. Beyond ``max_secrets`` the oldest chunk is dropped, except the
values registered again lately (secrets still in use, resolved on every call), which
move to the newest chunk.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Iterable
from urllib.parse import quote, quote_plus

# Shorter values are not scrubbed from free text: "abc" would mangle every line.
MIN_SECRET_LENGTH = 4
CHUNK_SIZE = 128


def encoded_variants(secret: str) -> set[str]:
    """Every form of ``secret`` to scrub: raw, URL-encoded, JSON-escaped and base64 cores.

    The base64 cores are the characters of ``base64(prefix + secret)`` that depend on the
    secret alone, for the three possible alignments; so a secret embedded anywhere in a
    base64 blob - ``base64("user:" + password)`` in a Basic header - is found too.
    """
    variants = {secret}
    raw = secret.encode("utf-8")
    for encoded in (quote(secret, safe=""), quote_plus(secret), quote(secret)):
        variants.add(encoded)
        variants.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    variants.add(json.dumps(secret)[1:-1])
    variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii").rstrip("=")
        start = -(-offset * 8 // 6)  # ceil: characters touched by the unknown prefix
        end = (offset + len(raw)) * 8 // 6  # characters wholly inside the secret
        core = encoded[start:end]
        if len(core) >= 6:
            variants.add(core)
            variants.add(core.replace("+", "-").replace("/", "_"))
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH}


def trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, factored as a trie.

    Python's ``re`` tries a flat alternation word by word at every position; the trie
    form branches on one character at a time, so scrubbing cost hardly grows with the
    number of values. At each node the longer continuation is tried first.
    """
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        # Chains of single-child nodes become one literal, so nesting (and recursion)
        # grows with the number of branch points, not with the length of a secret.
        branches = []
        for char, child in sorted(node.items()):
            if not char:
                continue
            literal = char
            while len(child) == 1 and "" not in child:
                ((next_char, child),) = child.items()
                literal += next_char
            branches.append(re.escape(literal) + emit(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


class _Chunk:
    __slots__ = ("values", "pattern", "dirty", "version")

    def __init__(self):
        self.values: dict[str, frozenset[str]] = {}
        self.pattern: re.Pattern | None = None
        self.dirty = False
        self.version = 0  # bumped on every change, so a slow compile never stores a stale pattern


class KnownSecrets:
    """Thread-safe registry of secret values with their compiled patterns."""

    def __init__(self, max_secrets: int):
        self.max_secrets = max(1, max_secrets)
        self._lock = threading.Lock()
        self._chunks: list[_Chunk] = [_Chunk()]
        self._last_seen: dict[str, int] = {}  # value -> tick of its last registration
        self._tick = 0
        # Bumped (under the lock) whenever the set of values changes, so a cache of scrub
        # results (Redactor.scrub_text) knows it must be dropped.
        self.version = 0

    def __len__(self) -> int:
        return len(self._last_seen)

    def __contains__(self, value: str) -> bool:
        return value in self._last_seen

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._tick += 1
            if value in self._last_seen:
                self._last_seen[value] = self._tick
                return
        variants = frozenset(encoded_variants(value))
        with self._lock:
            if value not in self._last_seen:
                self._insert(value, variants)
                self._evict_if_full()
            self._last_seen[value] = self._tick

    def _insert(self, value: str, variants: frozenset[str]) -> None:
        chunk = self._chunks[-1]
        if len(chunk.values) >= min(CHUNK_SIZE, self.max_secrets):
            chunk = _Chunk()
            self._chunks.append(chunk)
        chunk.values[value] = variants
        chunk.dirty = True
        chunk.version += 1
        self._last_seen[value] = self._tick
        self.version += 1

    def _evict_if_full(self) -> None:
        if len(self._last_seen) <= self.max_secrets or len(self._chunks) < 2:
            if len(self._last_seen) > self.max_secrets:  # one chunk only: drop its oldest value
                chunk = self._chunks[0]
                oldest = min(chunk.values, key=self._last_seen.__getitem__)
                del chunk.values[oldest], self._last_seen[oldest]
                chunk.dirty = True
                chunk.version += 1
                self.version += 1
            return
        oldest_chunk = self._chunks.pop(0)
        self.version += 1
        recent = self._tick - self.max_secrets // 2
        for value, variants in oldest_chunk.values.items():
            if self._last_seen[value] > recent:
                self._insert(value, variants)  # registered again lately: still in use, keep it
            else:
                del self._last_seen[value]

    def patterns(self) -> list[re.Pattern]:
        """The compiled patterns, recompiling only chunks that changed."""
        with self._lock:
            chunks = list(self._chunks)
            dirty = [
                (chunk, chunk.version, set().union(*chunk.values.values()) if chunk.values else set())
                for chunk in chunks
                if chunk.dirty
            ]
        patterns = {}
        # Compiled outside the lock, so other threads keep scrubbing; until a chunk's new
        # pattern is stored it stays dirty and they compile it too, never using a stale one.
        for chunk, version, variants in dirty:
            patterns[id(chunk)] = re.compile(trie_pattern(variants)) if variants else None
            with self._lock:
                if chunk.version == version:
                    chunk.pattern, chunk.dirty = patterns[id(chunk)], False
        result = []
        for chunk in chunks:
            pattern = patterns.get(id(chunk), chunk.pattern)
            if pattern is not None:
                result.append(pattern)
        return result

    def scrub(self, text: str, mask: str) -> str:
        for pattern in self.patterns():
            text = pattern.sub(mask, text)
        return text
