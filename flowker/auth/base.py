"""The auth type contract every plugin implements.

An auth type is a class with a ``name``, a ``description``, a ``config_schema``
(JSON Schema Draft 2020-12; secret fields marked ``"writeOnly": true`` so they can be
redacted and masked) and one method, :meth:`AuthType.build`, that turns a validated
config with resolved secrets into a :class:`requests.auth.AuthBase`.

What Flowker guarantees around ``build`` (:mod:`flowker.auth.resolution`): the config
passed the schema when the spec was saved *and* again after its secret references were
resolved (FLK-0521 otherwise), and every secret in it is known to the redactor. Around
the auth's ``__call__`` (:func:`flowker.security.http.apply_auth`): every header and query
parameter it sets is recorded and removed from a redirect hop that leaves the origin. An
auth object may name more in ``credential_headers`` / ``credential_query_params``
(iterables of names), e.g. a header it sets to a value the caller's request already had.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import requests

from flowker.schema_tools import compile_config_schema, config_problems


@dataclass(frozen=True)
class AuthContext:
    """What an auth type may use while building credentials (all optional).

    * ``settings``: the process :class:`~flowker.settings.Settings` (``production`` makes
      OIDC refuse plain-HTTP providers).
    * ``new_session()``: makes the hardened HTTP session for token endpoints and discovery
      (SSRF guard, no ``trust_env``; :func:`flowker.security.http.new_session`). When None
      and ``settings`` is given, OIDC builds the guarded session itself; with neither, a
      plain ``requests.Session`` with ``trust_env = False``.
    * ``register_secret(value)``: tells the redactor about a secret obtained at run time
      (access, refresh and ID tokens; resolved client secrets and passwords).
    * ``token_cache``: the process-wide :class:`flowker.auth.token_cache.TokenCache`
      (OIDC tokens and discovery documents). None: each type instance keeps its own.
    * ``redactor``: the process :class:`flowker.security.redaction.Redactor`; OIDC attaches
      it to the requests-oauthlib/oauthlib loggers. None: the token cache's own is used.
    """

    settings: Any = None
    new_session: Callable[[], requests.Session] | None = None
    register_secret: Callable[[str], None] = field(default=lambda value: None)
    token_cache: Any = None
    redactor: Any = None


class AuthType:
    """Base class of every auth type (built-in or third-party)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict] = {"type": "object", "additionalProperties": False}

    @functools.cached_property
    def _validator(self):
        return compile_config_schema(self.config_schema)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Top-level config keys whose values are secrets (``writeOnly`` in the schema)."""
        properties = self.config_schema.get("properties", {})
        return tuple(name for name, spec in properties.items() if spec.get("writeOnly"))

    def validate_config(self, config: Any) -> list[tuple[str, str]]:
        """Problems as (json path inside the config, message); empty when valid.

        ``{$env: ...}``/``{$file: ...}`` references stand in for strings.
        """
        return config_problems(self._validator, config if config is not None else {})

    def build(self, config: dict, context: AuthContext) -> requests.auth.AuthBase:
        """Return the ``requests`` auth for a validated config whose secrets are resolved."""
        raise NotImplementedError

    def __repr__(self) -> str:  # never shows config or secrets
        return f"<{type(self).__name__} auth type {self.name!r}>"
