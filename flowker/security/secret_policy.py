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

import fnmatch
import os
import stat
from dataclasses import dataclass
from typing import Iterable

from flowker.errors import SecretReferenceRefusedError

DEFAULT_FILE_DIRS = ("/run/secrets",)
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
OWN_ENV_PREFIX = "FLOWKER_"
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
        return cls(file_dirs=tuple(settings.secret_file_dirs), env_allow=settings.secret_env_patterns,
                   protected_files=tuple(os.path.abspath(p) for p in protected if p))

    # -- descriptions -----------------------------------------------------------------

    @property
    def real_dirs(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(directory) for directory in self.file_dirs if directory)

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
        if not any(_under(real, directory) for directory in self.real_dirs):
            return f"$file {file_name} must lie under FLOWKER_SECRET_FILE_DIRS ({self._dirs_text()})"
        if any(_under(real, pseudo) for pseudo in PSEUDO_FILESYSTEMS):
            return f"$file {file_name} is in a kernel pseudo-filesystem ({', '.join(PSEUDO_FILESYSTEMS)})"
        if self._is_protected(real, _identity(real)):
            return f"$file {file_name} is one of Flowker's own files (configuration, TLS, key or database files)"
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            # Save time: not there (or not readable) yet is fine, secrets are often mounted later.
            return f"$file {file_name} cannot be read: {exc.strerror or type(exc).__name__}" if must_exist else None
        if not stat.S_ISREG(mode):
            return f"$file {file_name} is not a regular file"
        return None

    def _is_protected(self, real: str, identity: tuple[int, int] | None) -> bool:
        for protected in self.protected_files:
            protected_real = os.path.realpath(protected)
            if real == protected_real:
                return True
            if identity is not None and identity == _identity(protected_real):
                return True  # a hard link to a protected file
        return False

    def open_file(self, file_name: str, where: str = "") -> int:
        """A read-only descriptor on the allowed, regular file ``file_name`` names.

        The checks run on the path and again on what was opened (its inode and, where
        the kernel says, its real path), so a symlink swapped in between does not help.
        """
        refusal = self.file_refusal(file_name, must_exist=True)
        if refusal:
            raise SecretReferenceRefusedError(where + refusal)
        real = os.path.realpath(file_name)
        # O_NONBLOCK: opening a FIFO swapped in must not hang the call; O_NOFOLLOW: nor a symlink.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(real, flags)
        except OSError as exc:
            raise SecretReferenceRefusedError(
                f"{where}$file {file_name} cannot be read: {exc.strerror or type(exc).__name__}") from None
        try:
            info = os.fstat(descriptor)
            opened = _opened_path(descriptor)
            if (not stat.S_ISREG(info.st_mode)
                    or self._is_protected(opened or real, (info.st_dev, info.st_ino))
                    or (opened is not None and not any(_under(opened, d) for d in self.real_dirs))):
                raise SecretReferenceRefusedError(f"{where}$file {file_name} changed while it was opened; refused")
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor


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
            if key == "$env" and isinstance(target, str):
                refusal = policy.env_refusal(target)
                if refusal:
                    yield path + (key,), refusal
                return
            if key == "$file" and isinstance(target, str) and target and "\0" not in target:
                refusal = policy.file_refusal(target, must_exist=False)
                if refusal:
                    yield path + (key,), refusal
                return
        for key, item in value.items():
            yield from reference_refusals(item, policy, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from reference_refusals(item, policy, path + (index,))
