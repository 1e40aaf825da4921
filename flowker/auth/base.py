"""The auth type contract every plugin implements.

An auth type is a class with a ``name``, a ``description``, a ``config_schema``
(JSON Schema Draft 2020-12; secret fields marked ``"writeOnly": true`` so they can be
redacted and masked) and one method, :meth:`AuthType.build`, that turns a validated
config with resolved secrets into a :class:`requests.auth.AuthBase`.

What Flowker guarantees around ``build`` (:mod:`flowker.auth.resolution`): the config
passed the schema when the spec was saved *and* again after its secret references were
resolved (FLK-0521 otherwise), and every secret in it is known to the redactor. Around
the auth's ``__call__`` (:func:`flowker.security.auth_tracking.apply_auth`): every header and query
parameter it sets is recorded and removed from a redirect hop that leaves the origin. An
auth object may name more in ``credential_headers`` / ``credential_query_params``
(iterables of names), e.g. a header it sets to a value the caller's request already had.

What an auth type declares, so Flowker never guesses from config key names (each has a
default derived from the config schema, so a type that declares nothing keeps working):

* :attr:`AuthType.secret_fields` - config keys holding secrets (default: the ``writeOnly``
  properties): registered with the redactor, masked in responses, encrypted at rest;
* :attr:`AuthType.url_fields` - config keys holding URLs Flowker will fetch (default: the
  properties with ``"format": "uri"``, or named ``*_url``): checked by the SSRF guard
  when the spec is saved, like the base URL;
* :meth:`AuthType.credential_headers` - the request headers the built auth sets from a
  config (default: the ``header_name`` value, if the schema has that property): their
  values are masked in logs and step records, and a redirect to another origin drops them;
* :attr:`AuthType.sends_credentials` - False for a type that adds nothing to a request
  (``none``): the executor probe then skips its authentication stage.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import requests

from flowker.schema_tools import compile_config_schema, config_problems

# Auth and action type names, as the spec schemas accept them (``authentication.type``,
# ``actionType``): a name outside this pattern could never be used by any spec.
TYPE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
TYPE_NAME_MAX_LENGTH = 100
_URI_FORMATS = frozenset({"uri", "iri", "url"})


def is_type_name(name: object) -> bool:
    """Whether ``name`` is a snake_case type name a spec can use."""
    return isinstance(name, str) and len(name) <= TYPE_NAME_MAX_LENGTH and bool(TYPE_NAME_PATTERN.match(name))


@dataclass(frozen=True)
class AuthenticationSpec:
    """An executor spec's ``authentication`` block, typed: the auth type's name and its
    config as stored (secret references unresolved). No block means type ``none``."""

    type: str = "none"
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, block: Any) -> "AuthenticationSpec":
        """From the ``authentication`` mapping of a spec body (already schema-checked)."""
        if isinstance(block, AuthenticationSpec):
            return block
        if not isinstance(block, Mapping):
            return cls()
        config = block.get("config")
        return cls(type=block.get("type") or "none", config=config if isinstance(config, Mapping) else {})

    def to_dict(self) -> dict:
        return {"type": self.type, "config": dict(self.config)}


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

    # False for a type whose auth adds nothing to a request (``none``).
    sends_credentials: ClassVar[bool] = True

    @property
    def _properties(self) -> dict:
        properties = self.config_schema.get("properties") if isinstance(self.config_schema, dict) else None
        return properties if isinstance(properties, dict) else {}

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Top-level config keys whose values are secrets (default: ``writeOnly`` in the
        schema). A subclass may set a tuple instead."""
        return tuple(
            name for name, spec in self._properties.items() if isinstance(spec, dict) and spec.get("writeOnly")
        )

    @property
    def url_fields(self) -> tuple[str, ...]:
        """Top-level config keys whose values are URLs Flowker fetches, checked by the SSRF
        guard when a spec is saved (default: ``"format": "uri"`` in the schema, or a name
        ending in ``_url``). A subclass may set a tuple instead."""
        return tuple(
            name
            for name, spec in self._properties.items()
            if name.endswith("_url") or (isinstance(spec, dict) and spec.get("format") in _URI_FORMATS)
        )

    def credential_headers(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """Request headers the auth built from ``config`` sets (besides ``Authorization``,
        which is always treated as a credential). Default: the ``header_name`` value, when
        the schema has that property. Only plain string values count (a secret reference
        there is not a header name yet)."""
        if "header_name" not in self._properties:
            return ()
        value = config.get("header_name") if isinstance(config, Mapping) else None
        return (value,) if isinstance(value, str) and value else ()

    def validate_config(self, config: Any) -> list[tuple[str, str]]:
        """Problems as (json path inside the config, message); empty when valid.

        ``{$env: ...}``/``{$file: ...}`` references stand in for strings. Called when a spec
        is saved (with references) and again before :meth:`build` (with their values).
        Override it to add rules a JSON Schema cannot state; start from ``super()``'s list.
        """
        return config_problems(self._validator, config if config is not None else {})

    def build(self, config: dict, context: AuthContext) -> requests.auth.AuthBase:
        """Return the ``requests`` auth for a validated config whose secrets are resolved."""
        raise NotImplementedError

    def __repr__(self) -> str:  # never shows config or secrets
        return f"<{type(self).__name__} auth type {self.name!r}>"
