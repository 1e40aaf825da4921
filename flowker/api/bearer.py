"""``Authorization: Bearer <JWT>`` for people (DESIGN §13): the ``bearer_authenticator``
collaborator :func:`flowker.api.app.create_app` builds from ``FLOWKER_OIDC_*``.

The token is checked by :class:`flowker.security.people_tokens.BearerTokenVerifier`
(JWKS of the issuer through the SSRF-guarded session); the person becomes a
:class:`flowker.access.Principal` of kind ``person`` named ``<issuer> <sub>``, with the
roles the role map gives their claim. A refused token is 401, a provider that cannot be
reached 503 ``FLK-0710``, a person whose claim maps to no role 403 (audited by the
authentication middleware's refusal hook).
"""

from __future__ import annotations

import time
from typing import Callable

import requests

from flowker.access import Principal, PrincipalKind, Role
from flowker.error_codes import ErrorCode
from flowker.errors import Forbidden, ServiceUnavailable, Unauthorized
from flowker.security.people_tokens import (
    BearerTokenVerifier,
    JwksCache,
    OidcSettings,
    ProviderUnavailable,
    TokenRefused,
    VerifiedPerson,
)


class PersonWithoutRole(Forbidden):
    """Signed in, but no value of the roles claim is in ``FLOWKER_OIDC_ROLE_MAP``."""

    def __init__(self, person: VerifiedPerson, roles_claim: str):
        shown = ", ".join(repr(value[:60]) for value in person.claim_values[:10]) or "nothing"
        super().__init__(
            f"{person.actor_id} signed in, but no Flowker role is mapped to their {roles_claim!r} claim "
            f"(it holds {shown}); an administrator adds claim-value=role to FLOWKER_OIDC_ROLE_MAP"
        )
        self.actor_type = PrincipalKind.PERSON.value
        self.actor_id = person.actor_id


class PeopleAuthenticator:
    """``authenticator(token) -> Principal``; ``verifier`` is the token check it uses."""

    def __init__(self, verifier: BearerTokenVerifier):
        self.verifier = verifier

    def __call__(self, token: str) -> Principal:
        try:
            person = self.verifier.verify(token)
        except TokenRefused as refused:
            raise Unauthorized(f"bearer token refused: {refused}") from None
        except ProviderUnavailable as unavailable:
            raise ServiceUnavailable(
                f"bearer tokens cannot be checked right now: {unavailable}",
                code=ErrorCode.IDENTITY_PROVIDER_UNAVAILABLE,
            ) from None
        if not person.roles:
            raise PersonWithoutRole(person, self.verifier.settings.roles_claim)
        roles = [Role(role) for role in person.roles]
        return Principal(PrincipalKind.PERSON, person.actor_id, roles[0], extra_roles=frozenset(roles[1:]))


def people_authenticator(
    settings,
    address_policy,
    *,
    new_session: Callable[[], requests.Session] | None = None,
    now: Callable[[], float] = time.time,
) -> PeopleAuthenticator | None:
    """The authenticator ``settings`` describe; None when no OpenID issuer is configured.
    ``new_session`` (default: the SSRF-guarded session of ``address_policy``, no redirects)
    fetches discovery and keys; tests give one trusting their CA."""
    if settings.oidc_issuer is None:
        return None
    if new_session is None:
        from flowker.security.http import new_session as guarded_session

        def new_session() -> requests.Session:
            return guarded_session(address_policy, max_redirects=0)

    oidc = OidcSettings(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        roles_claim=settings.oidc_roles_claim,
        role_map=settings.oidc_role_map,
    )
    jwks = JwksCache(oidc.issuer, new_session, production=settings.production)
    return PeopleAuthenticator(BearerTokenVerifier(oidc, jwks, now=now))
