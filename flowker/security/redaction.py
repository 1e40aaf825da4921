"""Keeping secrets out of responses, logs, error messages, step records and audit payloads.

Two layers:

* :func:`redact` is stateless: a deep copy where values under secret-looking keys
  (``password``, ``client_secret``, ``Authorization``...) become ``"****"``.
* :class:`Redactor` does that too, and also scrubs free text: secret VALUES registered at
  run time (resolved ``$env``/``$file`` secrets, OIDC tokens) in every encoding a log line
  or a response could carry them in (raw, base64 - also inside ``base64(user:pass)`` -,
  URL-encoded, JSON-escaped), token-like URL query parameters, ``Bearer``/``Basic``
  credentials, ``key: value`` and ``"key": "value"`` pairs with secret key names.

One process holds one :class:`Redactor` and passes it down; :class:`RedactingFilter` and
:func:`install_log_redaction` put it in front of the logging machinery so DEBUG logs of
requests-oauthlib and urllib3 never show tokens.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Mapping
from typing import Any, Callable, Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from flowker.security.known_secrets import MIN_SECRET_LENGTH, KnownSecrets, encoded_variants  # noqa: F401 (re-exported)

MASK = "****"

# Secret references ({"$env": NAME}, {"$file": PATH}) name where a secret lives, not the
# secret itself, so they are shown as they are; an {"$encrypted": ...} token is masked.
_REFERENCE_KEYS = ("$env", "$file")

# Normalised (lower-case, alphanumerics only) key names whose values are secrets.
SECRET_KEY_NAMES = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "clientsecret",
        "apikey",
        "xapikey",
        "key",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "privatekey",
        "signature",
        "credential",
        "credentials",
        "sessiontoken",
        "authtoken",
        "encrypted",
    }
)
# Keys ending in one of these are secrets too: dbPassword, X-Auth-Token, webhookSecret.
SECRET_KEY_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "credential",
    "credentials",
    "authorization",
    "cookie",
    "signature",
)
# Header names whose values are credentials (compared case-insensitively).
SECRET_HEADER_NAMES = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
# URL query / form parameters that carry credentials.
SECRET_QUERY_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "client_secret",
        "code",
        "password",
        "secret",
        "assertion",
        "client_assertion",
        "x-api-key",
    }
)

# Beyond this many registered values the oldest are forgotten (refreshed tokens pile up).
MAX_REGISTERED_SECRETS = 2048
# Scrub results remembered per Redactor: at most this many texts, each at most this long
# (keys and short values recur in every step record; long free text rarely does).
SCRUB_CACHE_SIZE = 4096
SCRUB_CACHE_MAX_TEXT = 1024
# Last characters shown by masked GET output, and only for values at least this long.
SHOW_LAST = 4
SHOW_LAST_MIN_LENGTH = 12


def normalize_key(name: str) -> str:
    """``Client-Secret``, ``client_secret`` and ``clientSecret`` all become ``clientsecret``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def is_secret_key(name: Any, extra_keys: Iterable[str] = ()) -> bool:
    """Whether a mapping key (or header name) names a secret value."""
    if not isinstance(name, str):
        return False
    if _is_builtin_secret_key(name):
        return True
    if not extra_keys:
        return False
    normalized = normalize_key(name)
    return bool(normalized) and any(normalized == normalize_key(extra) for extra in extra_keys)


def secret_key_test(extra_keys: Iterable[str] = ()) -> Callable[[str], bool]:
    """``is_secret_key(name, extra_keys)`` for string names, as one callable (the built-in
    names alone: the memoized test itself, no call in between)."""
    extra = tuple(extra_keys)
    if not extra:
        return _is_builtin_secret_key
    return lambda name: is_secret_key(name, extra)


@functools.lru_cache(maxsize=8192)
def _is_builtin_secret_key(name: str) -> bool:
    # The same few keys recur in every step record and audit entry: decide each once.
    normalized = normalize_key(name)
    return bool(normalized) and (normalized in SECRET_KEY_NAMES or normalized.endswith(SECRET_KEY_SUFFIXES))


def mask_value(value: Any, show_last: bool = False) -> str:
    """``"****"``, or ``"****"`` plus the last 4 characters of a long string when asked.

    The last characters are only shown for strings of at least 12 characters, so they
    never give away more than a third of a secret.
    """
    if show_last and isinstance(value, str) and len(value) >= SHOW_LAST_MIN_LENGTH:
        return MASK + value[-SHOW_LAST:]
    return MASK


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _REFERENCE_KEYS


def mask_secret_value(value: Any, show_last: bool = False) -> Any:
    """What :func:`redact` puts under a secret key: ``value`` itself when it is None, a
    boolean or a secret reference, else :func:`mask_value`."""
    if value is None or isinstance(value, bool) or _is_reference(value):
        return value
    return mask_value(value, show_last)


def redact(value: Any, *, show_last: bool = False, extra_keys: Iterable[str] = ()) -> Any:
    """Deep copy of ``value`` with every value under a secret-looking key masked.

    ``show_last=True`` keeps the last 4 characters of long secrets (masked GET output);
    audit and log redaction use the default plain ``"****"``. ``extra_keys`` adds key
    names (e.g. a configured API-key header name). Strings are not scrubbed here; use
    :meth:`Redactor.redact` for that.
    """
    extra = tuple(extra_keys)
    return _walk(value, show_last, extra, scrub=None)


def _walk(value: Any, show_last: bool, extra: tuple, scrub: Callable[[str], str] | None) -> Any:
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            new_key = scrub(key) if scrub and isinstance(key, str) else key
            if is_secret_key(key, extra):
                result[new_key] = mask_secret_value(item, show_last)
            else:
                result[new_key] = _walk(item, show_last, extra, scrub)
        return result
    if isinstance(value, list):
        return [_walk(item, show_last, extra, scrub) for item in value]
    if isinstance(value, tuple):
        return tuple(_walk(item, show_last, extra, scrub) for item in value)
    if scrub is not None:
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, (bytes, bytearray)):
            return scrub(bytes(value).decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    return value


def redact_url(url: str, extra_params: Iterable[str] = ()) -> str:
    """The URL with a userinfo password and token-like query/fragment parameters masked."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: treat it as a bare query string
        return _redact_query(url, extra_params)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{userinfo}@{hostport}"
    query = _redact_query(parts.query, extra_params)
    fragment = _redact_query(parts.fragment, extra_params) if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _is_secret_param(name: str, extra_params: Iterable[str]) -> bool:
    lowered = name.lower()
    return lowered in SECRET_QUERY_PARAMS or lowered in {p.lower() for p in extra_params} or is_secret_key(name)


def _redact_query(query: str, extra_params: Iterable[str]) -> str:
    if not query:
        return query
    pieces = []
    for piece in re.split(r"([&;])", query):
        if piece in ("&", ";"):
            pieces.append(piece)
            continue
        name, sep, _value = piece.partition("=")
        if sep and _is_secret_param(unquote_plus(name), extra_params):
            pieces.append(f"{name}={MASK}")
        else:
            pieces.append(piece)
    return "".join(pieces)


def redact_headers(headers: Any, extra_secret_headers: Iterable[str] = ()) -> dict:
    """A plain dict copy of a header map (or list of pairs) with credential headers masked.

    Masked: Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-API-Key, the names in
    ``extra_secret_headers`` (e.g. the configured api_key ``header_name``) and any header
    whose name looks like a secret (X-Auth-Token...).
    """
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    extra = {name.lower() for name in extra_secret_headers}
    result = {}
    for name, value in items:
        lowered = str(name).lower()
        if lowered in SECRET_HEADER_NAMES or lowered in extra or is_secret_key(name):
            result[name] = MASK
        else:
            result[name] = value
    return result


# --------------------------------------------------------------------------- Redactor

_BASIC_RE = re.compile(r"(?i)\b(basic)(\s+)([A-Za-z0-9+/]{6,}={0,2})")
_BEARER_RE = re.compile(r"(?i)\b(bearer|token|mac|dpop)(\s+)([A-Za-z0-9\-._~+/]{8,}=*)")
# Schemes are at most 32 characters: an unbounded scheme makes "a.a.a.a..." quadratic.
_URL_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{0,31}://[^\s\"'<>`]+")
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://[^\s/@:\"'<>]*):([^\s/@\"'<>]*)@")
# The same two patterns, found from each "://" (sub_urls): the regex engine would try the
# scheme at every word start of the text, which costs ~0.5 s per MiB of "a.a.a...".
_SCHEME_BEFORE_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{0,31}\Z")
_URL_TAIL_RE = re.compile(r"://[^\s\"'<>`]+")
_USERINFO_TAIL_RE = re.compile(r"(://[^\s/@:\"'<>]*):([^\s/@\"'<>]*)@")
# "name": "value" or 'name': 'value' (JSON, Python reprs) and name="value".
_QUOTED_PAIR_RE = re.compile(
    r"""(?P<q>["'])(?P<key>[A-Za-z0-9_.\- $]{1,64})(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<vq>["'])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)""",
    re.DOTALL,
)
# name=value and name: value, unquoted (form bodies, query strings, raw headers, messages).
_BARE_PAIR_RE = re.compile(
    r"(?P<lead>^|[?&;\s,({\[])(?P<key>[A-Za-z][A-Za-z0-9_.\-]{0,63})(?P<sep>=|:[ \t]*)(?!//)"
    r"(?P<value>[^\s&;,\"'<>)}\]]+)"
)


class Redactor:
    """Scrubs secrets from any value or text; one instance per process, passed down.

    Register secret values as they become known (:meth:`add_secret`); they are then
    removed from every string :meth:`scrub_text` / :meth:`redact` sees, in raw, base64
    (standard and URL-safe, at any alignment, so ``base64(user:password)`` is caught),
    URL-encoded and JSON-escaped form. Thread-safe.

    Results of :meth:`scrub_text` are cached by text (bounded). The cache belongs to one
    state of the registered values and secret header names: any change to either (a new
    secret, an evicted one, a new header name) makes the next lookup drop it, so a secret
    registered after a text was cached is masked the next time that text is scrubbed.
    """

    def __init__(
        self,
        *,
        extra_secret_headers: Iterable[str] = (),
        extra_secret_keys: Iterable[str] = (),
        max_secrets: int = MAX_REGISTERED_SECRETS,
        cache_size: int = SCRUB_CACHE_SIZE,
    ):
        self._extra_headers = tuple(h for h in extra_secret_headers if h)
        self._extra_keys = tuple(k for k in extra_secret_keys if k) + self._extra_headers
        self._max_secrets = max_secrets
        self._lock = threading.Lock()
        self._known = KnownSecrets(max_secrets)
        self._header_cache: tuple | None = None
        self._headers_version = 0  # bumped by add_secret_header (under self._lock)
        self._cache_size = max(0, cache_size)
        # (state it was computed for, {text: scrubbed}); replaced whole when the state changes.
        self._scrub_cache: tuple[tuple[int, int], dict[str, str]] = ((0, 0), {})
        # {url: redact_url(url)}: that part depends on the URL alone (an executor's URLs recur
        # on every call); the scrub after it goes through the state-checked cache above.
        self._url_cache: dict[str, str] = {}

    # -- registering ----------------------------------------------------------------

    def add_secret(self, value: Any) -> None:
        """Remember a secret value (a resolved secret, an access or refresh token).

        Values shorter than 4 characters are not scrubbed from free text (they would
        mangle every line); they are still masked under secret keys.
        """
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            self._known.add(value)

    def add_secrets(self, values: Iterable[Any]) -> None:
        for value in values:
            self.add_secret(value)

    def add_basic_credentials(self, username: str, password: str) -> None:
        """Register a Basic-auth pair: the password, and ``user:password`` as a whole."""
        self.add_secret(password)
        if username is not None and password:
            self.add_secret(f"{username}:{password}")

    def add_secret_header(self, name: str) -> None:
        """Treat another header name (a configured api_key header) as a credential."""
        with self._lock:
            if name and name not in self._extra_headers:
                self._extra_headers += (name,)
                self._extra_keys += (name,)
                self._headers_version += 1

    @property
    def secret_count(self) -> int:
        return len(self._known)

    def knows(self, value: str) -> bool:
        return value in self._known

    # -- scrubbing ------------------------------------------------------------------

    def scrub_text(self, text: Any) -> Any:
        """The text with known secrets and credential-looking fragments replaced by ``****``."""
        if not isinstance(text, str) or not text:
            return text
        if len(text) > SCRUB_CACHE_MAX_TEXT or not self._cache_size:
            return self._scrub_uncached(text)
        # The state is read BEFORE scrubbing: a secret registered meanwhile changes it, so
        # the result (which may lack that secret's mask) is never served for the new state.
        state = (self._known.version, self._headers_version)
        cached_state, cache = self._scrub_cache
        if cached_state == state:
            clean = cache.get(text)
            if clean is not None:
                return clean
        clean = self._scrub_uncached(text)
        with self._lock:
            cached_state, cache = self._scrub_cache
            if cached_state != state:
                if state != (self._known.version, self._headers_version):
                    return clean  # changed while scrubbing: do not cache for either state
                cache = {}
                self._scrub_cache = (state, cache)
            elif len(cache) >= self._cache_size:
                del cache[next(iter(cache))]  # the oldest entry
            cache[text] = clean
        return clean

    def _scrub_uncached(self, text: str) -> str:
        text = self._known.scrub(text, MASK)
        text = sub_urls(text, _URL_TAIL_RE, lambda scheme, m: redact_url(scheme + m.group(0)))
        text = sub_urls(text, _USERINFO_TAIL_RE, lambda scheme, m: f"{scheme}{m.group(1)}:{MASK}@")
        text = self._header_line_pattern().sub(_header_line_replacement, text)
        text = _BASIC_RE.sub(self._basic_replacement, text)
        text = _BEARER_RE.sub(_bearer_replacement, text)
        text = _QUOTED_PAIR_RE.sub(self._quoted_pair_replacement, text)
        text = _BARE_PAIR_RE.sub(self._bare_pair_replacement, text)
        return text

    def redact(self, value: Any, *, show_last: bool = False) -> Any:
        """Deep copy: secret keys masked (as :func:`redact`) and every string scrubbed."""
        return _walk(value, show_last, self._extra_keys, scrub=self.scrub_text)

    def redact_url(self, url: str) -> str:
        if not isinstance(url, str) or len(url) > SCRUB_CACHE_MAX_TEXT or not self._cache_size:
            return self.scrub_text(redact_url(url))
        cache = self._url_cache
        redacted = cache.get(url)
        if redacted is None:
            redacted = redact_url(url)
            with self._lock:
                if len(cache) >= self._cache_size:
                    cache.clear()  # URLs that recur come back at once; rare ones are not worth an order
                cache[url] = redacted
        return self.scrub_text(redacted)

    def redact_headers(self, headers: Any) -> dict:
        masked = redact_headers(headers, self._extra_headers)
        return {self.scrub_text(k): self.scrub_text(v) for k, v in masked.items()}

    def scrub_exception(self, exc: BaseException) -> str:
        """``str(exc)`` with secrets scrubbed: for error messages built from third-party exceptions."""
        return self.scrub_text(f"{type(exc).__name__}: {exc}")

    def log_filter(self) -> "RedactingFilter":
        return RedactingFilter(self)

    # -- helpers --------------------------------------------------------------------

    def _header_line_pattern(self) -> re.Pattern:
        names = SECRET_HEADER_NAMES + tuple(h.lower() for h in self._extra_headers)
        cached = self._header_cache
        if cached is None or cached[0] != names:
            alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
            # "Authorization: Bearer x" as raw header text: the whole rest of the line is the credential.
            pattern = re.compile(rf"(?i)(?<![\w-])({alternatives})([ \t]*:[ \t]*)(?![\"'\s])([^\r\n]+)")
            cached = self._header_cache = (names, pattern)
        return cached[1]

    @staticmethod
    def _basic_replacement(match: re.Match) -> str:
        candidate = match.group(3)
        try:
            decoded = base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True)
        except ValueError:
            return match.group(0)
        if b":" not in decoded:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{MASK}"

    def _quoted_pair_replacement(self, match: re.Match) -> str:
        if (
            not is_secret_key(match.group("key"), self._extra_keys)
            and match.group("key").lower() not in SECRET_QUERY_PARAMS
        ):
            return match.group(0)
        if match.group("key").lower() == "code" and match.group("sep").strip() == ":":
            return match.group(0)  # "code": "FLK-0001" in error bodies is not an OAuth code
        key_quote, value_quote = match.group("q"), match.group("vq")
        return f"{key_quote}{match.group('key')}{key_quote}{match.group('sep')}{value_quote}{MASK}{value_quote}"

    def _bare_pair_replacement(self, match: re.Match) -> str:
        key, value = match.group("key"), match.group("value")
        if value == MASK or value.startswith(MASK):
            return match.group(0)
        lowered = key.lower()
        after_query = match.group("lead") in ("?", "&", ";", "") and match.group("sep") == "="
        if is_secret_key(key, self._extra_keys) or (after_query and lowered in SECRET_QUERY_PARAMS):
            # "key" and "code" in prose ("status code: 200") are not credentials.
            if lowered in ("key", "code", "sig") and not after_query:
                return match.group(0)
            return f"{match.group('lead')}{key}{match.group('sep')}{MASK}"
        return match.group(0)


def sub_urls(text: str, tail: re.Pattern, replace: Callable[[str, re.Match], str]) -> str:
    """``(?i)\\b<scheme>`` + ``tail`` replaced, as ``re.sub`` with the whole pattern would do
    (leftmost, non-overlapping), but found from each ``://``: linear in the text.

    ``tail`` matches from the ``://``; ``replace(scheme, tail match)`` gives the new text.
    """
    position = text.find("://")
    if position < 0:
        return text
    pieces, done = [], 0
    while position >= 0:
        scheme = _SCHEME_BEFORE_RE.search(text, max(done, position - 32), position)
        rest = tail.match(text, position) if scheme else None
        if scheme is None or rest is None:
            position = text.find("://", position + 1)
            continue
        pieces.append(text[done : scheme.start()])
        pieces.append(replace(scheme.group(0), rest))
        done = rest.end()
        position = text.find("://", done)
    pieces.append(text[done:])
    return "".join(pieces)


def _header_line_replacement(match: re.Match) -> str:
    return f"{match.group(1)}{match.group(2)}{MASK}"


def _bearer_replacement(match: re.Match) -> str:
    token = match.group(3)
    # Prose ("bearer authentication") is left alone; real tokens have digits, capitals or symbols.
    if not re.search(r"[0-9A-Z\-._~+/]", token):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{MASK}"


# Log redaction lives in its own module; these names stay importable from here.
from flowker.security.log_redaction import (  # noqa: E402,F401
    RedactingFilter,
    RedactingRecordFactory,
    install_log_redaction,
    scrub_record,
)
