"""Where ``{$file}`` and ``{$env}`` secret references may point (DESIGN §6).

An API caller who can save an executor chooses its references and the URL they are
sent to, so a reference is a read primitive on the server. It is confined:

* ``{$file: P}``: the real path of ``P`` (symlinks, ``..``, ``/dev/fd`` and ``/proc/self``
  resolved) must lie under a directory of ``FLOWKER_SECRET_FILE_DIRS`` and be a regular
  file; kernel pseudo-filesystems are refused whatever the directories say;
* ``{$env: NAME}``: ``NAME`` must match a glob of ``FLOWKER_SECRET_ENV_ALLOW``; ``FLOWKER_*``
  (Flowker's own settings) never does;
* Flowker's own files (bootstrap config, TLS certificate and key, the development Fernet
  key file, the audit signing key, the SQLite database and its journals) are never
  readable, compared by real path and by (device, inode) so a hard link does not help.

The same policy answers at save time (a file that does not exist yet is accepted when it
would lie under an allowed directory: secrets are often mounted later) and at call time
(:meth:`SecretReferencePolicy.open_file`, which re-checks what it actually opened).
Messages name the reference and the rule, never a value.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Iterable

from flowker.errors import SecretReferenceRefusedError, SecretUnavailableError

DEFAULT_FILE_DIRS = ("/run/secrets",)
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
_PSEUDO_PREFIXES = tuple(root + "/" for root in PSEUDO_FILESYSTEMS)  # real paths: normalised, absolute
OWN_ENV_PREFIX = "FLOWKER_"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
KEY_FILE_SUFFIX = ".secret-key"
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _under(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:  # one relative, one absolute (cannot happen after realpath) or mixed drives
        return False


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return (info.st_dev, info.st_ino)


@dataclass(frozen=True)
class SecretReferencePolicy:
    """The confinement rules; build it with :meth:`from_settings` (defaults: development)."""

    file_dirs: tuple[str, ...] = DEFAULT_FILE_DIRS
    # Glob patterns on the variable name; None: any name (development's default).
    env_allow: tuple[str, ...] | None = None
    protected_files: tuple[str, ...] = ()
    # Real paths, resolved once (a call checks the file's own real path against them, so a
    # directory that later becomes a link elsewhere only refuses more). Identities of the
    # protected files are read at every check: they may be created or replaced meanwhile.
    real_dirs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _real_protected: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "real_dirs", tuple(os.path.realpath(d) for d in self.file_dirs if d))
        object.__setattr__(self, "_real_protected", tuple(os.path.realpath(p) for p in self.protected_files))

    @classmethod
    def from_settings(cls, settings) -> "SecretReferencePolicy":
        from flowker.security.secrets import sqlite_path

        protected = [getattr(settings, name, None) for name in ("config_file", "tls_certfile", "tls_keyfile")]
        signing_key = getattr(settings, "audit_signing_key", None)
        if signing_key and "-----BEGIN" not in signing_key:
            protected.append(signing_key)  # a path to Flowker's own private key
        database_file = sqlite_path(settings.database_url)
        if database_file:
            protected += [database_file + suffix for suffix in SQLITE_COMPANIONS + (KEY_FILE_SUFFIX,)]
        return cls(
            file_dirs=tuple(settings.secret_file_dirs),
            env_allow=settings.secret_env_patterns,
            protected_files=tuple(os.path.abspath(p) for p in protected if p),
        )

    # -- descriptions -----------------------------------------------------------------

    def _dirs_text(self) -> str:
        return ", ".join(self.file_dirs) if self.file_dirs else "none set"

    def _env_text(self) -> str:
        return ", ".join(self.env_allow) if self.env_allow else "none set"

    # -- $env ---------------------------------------------------------------------------

    def env_refusal(self, name: str) -> str | None:
        """Why ``{$env: name}`` is refused (the rule broken), or None when it is allowed."""
        if name.upper().startswith(OWN_ENV_PREFIX):
            return f"environment variable {name} is Flowker's own setting and cannot be a secret reference"
        if self.env_allow is None:
            return None
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.env_allow):
            return f"$env {name} is not allowed by FLOWKER_SECRET_ENV_ALLOW ({self._env_text()})"
        return None

    # -- $file --------------------------------------------------------------------------

    def file_refusal(self, file_name: str, *, must_exist: bool) -> str | None:
        """Why ``{$file: file_name}`` is refused, or None when it is allowed.

        With ``must_exist`` False (save time) a missing file under an allowed directory
        passes; it is checked again when a call reads it.
        """
        real = os.path.realpath(file_name)
        refusal = self._place_refusal(file_name, real) or self._own_file_refusal(file_name, real, _identity(real))
        if refusal:
            return refusal
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            # Save time: not there (or not readable) yet is fine, secrets are often mounted later.
            return _unreadable(file_name, exc) if must_exist else None
        if not stat.S_ISREG(mode):
            return f"$file {file_name} is not a regular file"
        return None

    def _place_refusal(self, file_name: str, real: str) -> str | None:
        if not any(_under(real, directory) for directory in self.real_dirs):
            return f"$file {file_name} must lie under FLOWKER_SECRET_FILE_DIRS ({self._dirs_text()})"
        if real.startswith(_PSEUDO_PREFIXES) or real in PSEUDO_FILESYSTEMS:
            return f"$file {file_name} is in a kernel pseudo-filesystem ({', '.join(PSEUDO_FILESYSTEMS)})"
        return None

    def _own_file_refusal(self, file_name: str, real: str, identity: tuple[int, int] | None) -> str | None:
        # By path, and by inode: a hard link to a protected file (or the file a protected
        # path now points to) is the same file.
        if real in self._real_protected or (
            identity is not None and any(identity == _identity(p) for p in self.protected_files)
        ):
            return f"$file {file_name} is one of Flowker's own files (configuration, TLS, key or database files)"
        return None

    def open_file(self, file_name: str, where: str = "") -> int:
        """A read-only descriptor on the allowed, regular file ``file_name`` names (call time).

        The place is checked on the real path before opening; the kind of file, its
        identity and (where the kernel says) its real path on what was opened, so a
        symlink or FIFO swapped in between does not help.
        """
        real = os.path.realpath(file_name)
        refusal = self._place_refusal(file_name, real)
        if refusal:
            raise SecretReferenceRefusedError(where + refusal)
        # O_NONBLOCK: opening a FIFO must not hang the call; O_NOFOLLOW: nor may a symlink swapped in.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(real, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the last part became a symlink since realpath
                raise SecretReferenceRefusedError(
                    f"{where}$file {file_name} changed while it was opened; refused"
                ) from None
            raise SecretUnavailableError(where + _unreadable(file_name, exc)) from None
        try:
            info = os.fstat(descriptor)
            opened = _opened_path(descriptor)
            if opened is not None and opened != real and self._place_refusal(file_name, opened):
                raise SecretReferenceRefusedError(f"{where}$file {file_name} changed while it was opened; refused")
            if not stat.S_ISREG(info.st_mode):
                raise SecretReferenceRefusedError(f"{where}$file {file_name} is not a regular file")
            refusal = self._own_file_refusal(file_name, opened or real, (info.st_dev, info.st_ino))
            if refusal:
                raise SecretReferenceRefusedError(where + refusal)
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor


def _unreadable(file_name: str, exc: OSError) -> str:
    return f"$file {file_name} cannot be read: {exc.strerror or type(exc).__name__}"


def _opened_path(descriptor: int) -> str | None:
    """The real path of an open descriptor where the kernel tells it (Linux), else None."""
    try:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return None
    return path if path.startswith("/") and not path.endswith(" (deleted)") else None


def reference_refusals(value, policy: SecretReferencePolicy, path: tuple = ()) -> Iterable[tuple[tuple, str]]:
    """(path of the reference's value, why it is refused) for every refused reference in ``value``.

    Save time: a missing file under an allowed directory is not refused.
    """
    if isinstance(value, dict):
        if len(value) == 1:
            key, target = next(iter(value.items()))
            if key == "$env":
                name_ok = isinstance(target, str) and ENV_NAME.match(target) is not None
                refusal = policy.env_refusal(target) if name_ok else "$env must name an environment variable"
                if refusal:
                    yield path + (key,), refusal
                return
            if key == "$file":
                path_ok = isinstance(target, str) and target != "" and "\0" not in target
                refusal = policy.file_refusal(target, must_exist=False) if path_ok else "$file must name a file"
                if refusal:
                    yield path + (key,), refusal
                return
        for key, item in value.items():
            yield from reference_refusals(item, policy, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from reference_refusals(item, policy, path + (index,))
