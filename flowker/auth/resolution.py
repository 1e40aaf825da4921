"""From an executor's ``authentication`` block to a ``requests`` auth, one way for every path.

The runner (:class:`flowker.runner.executors.ExecutorPool`) and the connectivity probe
(:mod:`flowker.api.executor_probe`) both go through :class:`AuthResolution`:

1. every ``$env``/``$file``/``$encrypted`` reference is resolved by a
   :class:`~flowker.security.secrets.SecretResolver` wired to the redactor, and every
   value of a secret (``writeOnly``) field is registered with the redactor as well, so
   each secret that can enter an outbound request is known before the request is built;
2. the resolved config is checked against the type's config schema (a reference passes
   as a string when the spec is saved; here its value must fit too), failing with
   :class:`ResolvedConfigError`, whose message names the field and the rule, never the
   value;
3. the type's ``build`` makes the auth (:meth:`AuthResolution.credentials`, which also
   reuses the auth built last time while the resolved values stay the same).

The block comes in as an :class:`~flowker.auth.base.AuthenticationSpec` (a plain mapping
is accepted and converted); what the auth sets and which fields are secrets come from the
type's declarations, never from config key names.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flowker.auth.base import AuthContext, AuthenticationSpec, AuthType
from flowker.errors import ConfigurationError, ResolvedConfigError, UnprocessableEntity

__all__ = ["AuthResolution", "Credentials", "ResolvedConfigError"]


@dataclass(frozen=True)
class Credentials:
    """A built auth, the type it came from and a digest of the resolved config it was
    built from (the same digest: the same auth can be reused).

    ``resolved`` is a private copy of that config: a later resolution equal to it, type
    for type, is the same digest without encoding and hashing it again on every call."""

    auth_type: AuthType
    fingerprint: str
    auth: Any
    resolved: Any = field(default=None, repr=False, compare=False)


class AuthResolution:
    """Resolves, validates and builds auths for one process (thread-safe: no mutable state
    but the resolvers, built once).

    ``secret_box`` is called only when a config holds an ``$encrypted`` value (in
    development, loading the box may create the key file).
    """

    def __init__(self, settings, registry, redactor, *, secret_box: Callable[[], Any]):
        self.settings = settings
        self.registry = registry
        self.redactor = redactor
        self._secret_box = secret_box
        self._resolvers: dict[bool, Any] = {}

    def resolve(self, authentication: AuthenticationSpec | Mapping | None) -> tuple[AuthType, dict]:
        """(the auth type, its config with every secret resolved and registered)."""
        from flowker.security.secrets import SecretResolver, count_encrypted

        spec = AuthenticationSpec.from_spec(authentication)
        auth_type = self.registry.auth_type(spec.type)
        config = dict(spec.config)
        with_box = bool(count_encrypted(config))
        resolver = self._resolvers.get(with_box)
        if resolver is None:
            resolver = self._resolvers[with_box] = SecretResolver.from_settings(
                self.settings, box=self._secret_box() if with_box else None, register=self.redactor.add_secret
            )
        try:
            resolved = resolver.resolve(config)
        except ConfigurationError as exc:
            # "token: environment variable X is not set" reads like a credential pair to the
            # redactor (which would mask it); say where the secret belongs at the end instead.
            where, separator, rest = exc.message.partition(": ")
            message = f"{rest} (authentication.config.{where})" if separator and " " not in where else exc.message
            raise UnprocessableEntity(
                f"cannot resolve the executor's secrets: {message}",
                code=exc.code,
                status=UnprocessableEntity.http_status,
            ) from None
        if isinstance(resolved, dict):
            # Literal secrets the caller already decrypted are secrets too.
            for name in auth_type.secret_fields:
                if isinstance(resolved.get(name), str):
                    self.redactor.add_secret(resolved[name])
        return auth_type, resolved

    def validate(self, auth_type: AuthType, resolved: Any) -> None:
        """Raise :class:`ResolvedConfigError` when ``resolved`` does not fit the schema."""
        problems = auth_type.validate_config(resolved)
        if problems:
            text = "; ".join(
                f"authentication.config{'.' + path if path else ''} {message}" for path, message in problems
            )
            raise ResolvedConfigError(
                self.redactor.scrub_text(
                    f"the resolved config of auth type {auth_type.name!r} does not match its schema: {text}"
                )
            )

    def build(self, auth_type: AuthType, resolved: dict, context: AuthContext):
        """Validate ``resolved`` and build the auth."""
        self.validate(auth_type, resolved)
        return auth_type.build(resolved, context)

    def credentials(
        self,
        auth_type: AuthType,
        resolved: dict,
        context: Callable[[], AuthContext],
        *,
        reuse: Credentials | None = None,
    ) -> Credentials:
        """The auth for a resolved config: ``reuse`` when it was built from the same values,
        else validated and built anew (``context()`` is called only then). A failing check
        leaves nothing to reuse, so it fails every call."""
        if reuse is not None and reuse.auth_type is auth_type and _identical(reuse.resolved, resolved):
            return reuse  # the values it was built from, exactly: the same digest
        fingerprint = _fingerprint(auth_type, resolved)
        if reuse is not None and reuse.fingerprint == fingerprint and reuse.auth_type is auth_type:
            return reuse
        snapshot: Any
        try:
            snapshot = copy.deepcopy(resolved)  # the auth's build may keep (and change) ``resolved``
        except Exception:  # noqa: BLE001  an odd value: reuse then goes by the fingerprint alone
            snapshot = _NOT_COPIED
        return Credentials(auth_type, fingerprint, self.build(auth_type, resolved, context()), snapshot)


_NOT_COPIED = object()  # identical to no resolved config


def _fingerprint(auth_type: AuthType, resolved: Any) -> str:
    return hashlib.sha256(json.dumps([auth_type.name, resolved], sort_keys=True, default=str).encode()).hexdigest()


def _identical(a: Any, b: Any) -> bool:
    """``a == b`` with every value of the same type (``1`` is not ``True`` nor ``1.0``): what
    guarantees the same :func:`_fingerprint`. Only plain JSON-like values count: anything
    else answers False (the caller then compares fingerprints)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return a.keys() == b.keys() and all(_identical(value, b[key]) for key, value in a.items())
    if kind is list:
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    if kind in (str, int, float, bool) or a is None:
        return a == b
    return False
