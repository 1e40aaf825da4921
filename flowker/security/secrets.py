"""Secrets in executor configs: references resolved at call time, literals encrypted at rest.

A secret field holds one of:

* ``{"$env": "NAME"}`` - the environment variable, read when the call is made;
* ``{"$file": "/run/secrets/x"}`` - the file's text (one trailing newline dropped), read
  when the call is made, at most 64 KiB;
* ``{"$encrypted": "<fernet token>"}`` - a literal secret posted over REST, encrypted
  with ``FLOWKER_SECRET_KEY`` (:class:`SecretBox`) before it is stored;
* a plain string - only ever in memory, between a REST body and :meth:`SecretBox.encrypt_fields`.

Errors name the variable, file or field, never the value. Where references may point is
confined by :class:`flowker.security.secret_policy.SecretReferencePolicy`
(``FLOWKER_SECRET_FILE_DIRS``, ``FLOWKER_SECRET_ENV_ALLOW``; ``FLOWKER_*`` variables and
Flowker's own files never), so an API client cannot make an executor send them out.

Development without ``FLOWKER_SECRET_KEY``: with a SQLite database, a key is generated
once into ``<database file>.secret-key`` (mode 0600) and reused; with any other database
there is no key, and storing a literal secret fails with a clear error (references
still work). Once ``FLOWKER_SECRET_KEY`` is set, that file's key still decrypts (as the
oldest key) until ``flowker secrets rotate`` has moved everything to the new key.
Production refuses to start without ``FLOWKER_SECRET_KEY`` and never reads the file.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from flowker.errors import SecretKeyError, SecretReferenceRefusedError, SecretUnavailableError  # noqa: F401 (re-exported)
from flowker.security.redaction import MASK, mask_value
from flowker.security.secret_policy import ENV_NAME, KEY_FILE_SUFFIX, SecretReferencePolicy

ENV_REFERENCE = "$env"
FILE_REFERENCE = "$file"
ENCRYPTED = "$encrypted"
MAX_SECRET_FILE_BYTES = 64 * 1024

Path = Sequence[Any]  # ("authentication", "config", "token"); "*" matches any key or index


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in (ENV_REFERENCE, FILE_REFERENCE)


def is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) == ENCRYPTED


# --------------------------------------------------------------------------- resolution


class SecretResolver:
    """Resolves ``$env``/``$file``/``$encrypted`` references in a config, at call time.

    Each resolved value is handed to ``register`` (the process :class:`Redactor`'s
    ``add_secret``) so it is scrubbed from everything Flowker writes. ``register`` is
    required: no resolver exists that could hand out a secret the redactor does not know.
    """

    def __init__(
        self,
        *,
        register: Callable[[str], None],
        environ: Mapping[str, str] | None = None,
        box: "SecretBox | None" = None,
        max_file_bytes: int = MAX_SECRET_FILE_BYTES,
        policy: SecretReferencePolicy | None = None,
    ):
        if not callable(register):
            raise TypeError("SecretResolver needs register: the redactor's add_secret")
        self._environ = environ
        self.box = box
        self.register = register
        self.max_file_bytes = max_file_bytes
        # Without settings: development's defaults (files under /run/secrets, any name but FLOWKER_*).
        self.policy = policy or SecretReferencePolicy()

    @classmethod
    def from_settings(
        cls,
        settings,
        *,
        register: Callable[[str], None],
        box: "SecretBox | None" = None,
        environ: Mapping[str, str] | None = None,
    ) -> "SecretResolver":
        return cls(environ=environ, box=box, register=register, policy=SecretReferencePolicy.from_settings(settings))

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def resolve(self, config: Any) -> Any:
        """A copy of ``config`` with every reference replaced by the secret it names."""
        return self._walk(config, ())

    def _walk(self, value: Any, path: tuple) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                key = next(iter(value))
                if key == ENV_REFERENCE:
                    return self._registered(self.resolve_env(value[key], path))
                if key == FILE_REFERENCE:
                    return self._registered(self.resolve_file(value[key], path))
                if key == ENCRYPTED:
                    if self.box is None:
                        raise SecretKeyError(f"{_where(path)}is encrypted but no secret key is configured")
                    return self._registered(self.box.decrypt(value[key], where=_dotted(path)))
            return {k: self._walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(item, path + (i,)) for i, item in enumerate(value)]
        return value

    def _registered(self, secret: str) -> str:
        self.register(secret)
        return secret

    def resolve_env(self, name: Any, path: tuple = ()) -> str:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise SecretUnavailableError(f"{_where(path)}$env must name an environment variable")
        refusal = self.policy.env_refusal(name)
        if refusal:
            raise SecretReferenceRefusedError(f"{_where(path)}{refusal}")
        value = self.environ.get(name)
        if value is None:
            raise SecretUnavailableError(f"{_where(path)}environment variable {name} is not set")
        if value == "":
            raise SecretUnavailableError(f"{_where(path)}environment variable {name} is empty")
        return value

    def resolve_file(self, file_name: Any, path: tuple = ()) -> str:
        if not isinstance(file_name, str) or not file_name or "\0" in file_name:
            raise SecretUnavailableError(f"{_where(path)}$file must name a file")
        descriptor = self.policy.open_file(file_name, _where(path))
        try:
            with os.fdopen(descriptor, "rb") as handle:
                data = handle.read(self.max_file_bytes + 1)
        except OSError as exc:
            raise SecretUnavailableError(
                f"{_where(path)}secret file {file_name} cannot be read: {exc.strerror or type(exc).__name__}"
            ) from None
        if len(data) > self.max_file_bytes:
            raise SecretUnavailableError(
                f"{_where(path)}secret file {file_name} is larger than {self.max_file_bytes} bytes"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailableError(f"{_where(path)}secret file {file_name} is not UTF-8 text") from None
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        if not text:
            raise SecretUnavailableError(f"{_where(path)}secret file {file_name} is empty")
        return text


def resolve_secrets(
    config: Any,
    environ: Mapping[str, str] | None = None,
    *,
    box: "SecretBox | None" = None,
    register: Callable[[str], None] | None = None,
    max_file_bytes: int = MAX_SECRET_FILE_BYTES,
    policy: SecretReferencePolicy | None = None,
) -> Any:
    """A resolved copy of ``config`` (see :class:`SecretResolver`); ``environ`` defaults to os.environ.

    A convenience for tests and tools: without ``register`` nothing learns the values.
    Flowker's own call paths resolve through :class:`flowker.auth.resolution.AuthResolution`.
    """
    return SecretResolver(
        environ=environ, box=box, register=register or _unregistered, max_file_bytes=max_file_bytes, policy=policy
    ).resolve(config)


def _unregistered(secret: str) -> None:
    pass


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _where(path: tuple) -> str:
    return f"{_dotted(path)}: " if path else ""


# --------------------------------------------------------------------------- field paths


def _normalize_paths(paths: Iterable[Path | str]) -> list[tuple]:
    return [tuple(p.split(".")) if isinstance(p, str) else tuple(p) for p in paths]


def _map_paths(config: Any, paths: Iterable[Path | str], change: Callable[[Any, tuple], Any]) -> Any:
    """A deep copy of ``config`` with ``change(value, path)`` applied at every matching path."""
    import copy

    result = copy.deepcopy(config)
    for path in _normalize_paths(paths):
        result = _apply(result, path, (), change)
    return result


def _apply(node: Any, remaining: tuple, done: tuple, change) -> Any:
    if not remaining:
        return change(node, done)
    head, rest = remaining[0], remaining[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else ([head] if head in node else [])
        for key in keys:
            node[key] = _apply(node[key], rest, done + (key,), change)
    elif isinstance(node, list):
        indexes = (
            range(len(node)) if head == "*" else ([int(head)] if str(head).isdigit() and int(head) < len(node) else [])
        )
        for index in indexes:
            node[index] = _apply(node[index], rest, done + (index,), change)
    return node


def mask_fields(config: Any, secret_field_paths: Iterable[Path | str], box: "SecretBox | None" = None) -> Any:
    """Copy for GET output: secrets at the paths become ``"****"`` plus at most the last 4.

    References (``$env``/``$file``) are shown as they are. An encrypted value shows its
    last 4 characters only when ``box`` can decrypt it; otherwise plain ``"****"``.
    """

    def mask(value: Any, path: tuple) -> Any:
        if value is None or is_reference(value):
            return value
        if is_encrypted(value):
            if box is None:
                return MASK
            try:
                return mask_value(box.decrypt(value[ENCRYPTED], where=_dotted(path)), show_last=True)
            except SecretKeyError:
                return MASK
        return mask_value(value, show_last=True)

    return _map_paths(config, secret_field_paths, mask)


# --------------------------------------------------------------------------- encryption


class SecretBox:
    """Fernet encryption of literal secrets, with several keys for rotation (newest first).

    Every key decrypts; only the first encrypts. :meth:`rotate` re-encrypts a token
    with the newest key.
    """

    def __init__(self, keys: Sequence[str | bytes], *, source: str = "FLOWKER_SECRET_KEY"):
        if not keys:
            raise SecretKeyError(f"{source} holds no key")
        fernets = []
        for position, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.encode() if isinstance(key, str) else key))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"{source}: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; make one "
                    "with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)
        self.source = source

    def __repr__(self) -> str:
        return f"<SecretBox {self.key_count} key(s) from {self.source}>"

    @classmethod
    def from_settings(cls, settings, *, create_key_file: bool = True) -> "SecretBox | None":
        """The box for ``settings``; None in development when no key can be had (see module doc)."""
        development = getattr(settings, "env", "development") == "development"
        database_file = sqlite_path(settings.database_url)
        key_file = database_file + KEY_FILE_SUFFIX if database_file else None
        if settings.secret_keys:
            keys = list(settings.secret_keys)
            # A development key file stays readable as the oldest key, so secrets stored
            # before FLOWKER_SECRET_KEY was set still decrypt and `secrets rotate` moves them.
            file_key = _read_key_file(key_file) if development and key_file else None
            if file_key and file_key not in keys:
                keys.append(file_key)
            return cls(keys)
        if not development:
            raise SecretKeyError("FLOWKER_SECRET_KEY is required in production")
        if not key_file:
            return None
        key = read_or_create_key_file(key_file) if create_key_file else _read_key_file(key_file)
        return cls([key], source=key_file) if key else None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: Any, *, where: str = "") -> str:
        prefix = f"{where}: " if where else ""
        if not isinstance(token, str):
            raise SecretKeyError(f"{prefix}encrypted value is not a token")
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                f"{prefix}encrypted value cannot be decrypted with any key in {self.source} "
                "(was the key it was written with removed?)"
            ) from None

    def rotate(self, token: str, *, where: str = "") -> str:
        """The same secret encrypted with the newest key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, AttributeError):
            prefix = f"{where}: " if where else ""
            raise SecretKeyError(f"{prefix}encrypted value cannot be decrypted with any key in {self.source}") from None

    def encrypt_fields(self, config: Any, secret_field_paths: Iterable[Path | str]) -> Any:
        """Copy with literal strings at the paths replaced by ``{"$encrypted": token}``."""

        def encrypt(value: Any, path: tuple) -> Any:
            if isinstance(value, str):
                return {ENCRYPTED: self.encrypt(value)}
            return value  # references, already-encrypted values, absent fields

        return _map_paths(config, secret_field_paths, encrypt)

    def decrypt_fields(self, config: Any, secret_field_paths: Iterable[Path | str] | None = None) -> Any:
        """Copy with ``{"$encrypted": token}`` replaced by the plaintext (at the paths, or anywhere)."""

        def decrypt(value: Any, path: tuple) -> Any:
            return self.decrypt(value[ENCRYPTED], where=_dotted(path)) if is_encrypted(value) else value

        if secret_field_paths is None:
            return _walk_encrypted(config, (), decrypt)
        return _map_paths(config, secret_field_paths, decrypt)

    def rotate_fields(self, config: Any) -> tuple[Any, int]:
        """Copy with every encrypted value, wherever it is, re-encrypted with the newest key."""
        count = 0

        def rotate(value: Any, path: tuple) -> Any:
            nonlocal count
            if not is_encrypted(value):
                return value
            count += 1
            return {ENCRYPTED: self.rotate(value[ENCRYPTED], where=_dotted(path))}

        return _walk_encrypted(config, (), rotate), count


def _walk_encrypted(value: Any, path: tuple, change) -> Any:
    if is_encrypted(value):
        return change(value, path)
    if isinstance(value, dict):
        return {k: _walk_encrypted(v, path + (k,), change) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_encrypted(v, path + (i,), change) for i, v in enumerate(value)]
    return value


def count_encrypted(value: Any) -> int:
    if is_encrypted(value):
        return 1
    if isinstance(value, dict):
        return sum(count_encrypted(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_encrypted(v) for v in value)
    return 0


# --------------------------------------------------------------------------- development key file


def sqlite_path(database_url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL (absolute), else None."""
    try:
        parts = urlsplit(database_url or "")
    except ValueError:
        return None
    if parts.scheme.lower() != "sqlite" or parts.netloc:
        return None
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.abspath(path)


def _read_key_file(path: str) -> str | None:
    try:
        with open(path, "r", encoding="ascii") as handle:
            key = handle.read(200).strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise SecretKeyError(f"development secret key file {path} cannot be read: {exc}") from None
    if os.name == "posix" and os.stat(path).st_mode & 0o077:
        raise SecretKeyError(f"development secret key file {path} must be readable by its owner only (chmod 600)")
    return key or None


def read_or_create_key_file(path: str) -> str:
    """Development key: read ``path``, or create it (0600) with a new Fernet key.

    Creation is atomic (a temporary file hard-linked into place), so processes starting
    at the same time agree on one key.
    """
    existing = _read_key_file(path)
    if existing:
        return existing
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".flowker-key-", dir=directory)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(Fernet.generate_key().decode("ascii") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race; use its key
    finally:
        os.unlink(temporary)
    key = _read_key_file(path)
    if not key:
        raise SecretKeyError(f"development secret key file {path} is empty")
    return key
