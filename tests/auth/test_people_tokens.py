"""People's bearer tokens against the real ``oidc-provider`` (people_provider.mjs): its
JWT access tokens, its discovery document and JWKS, fetched through Flowker's guarded
session; and the hostile tokens a caller can make from what the provider publishes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flowker.security.people_tokens import (
    BearerTokenVerifier,
    JwksCache,
    OidcSettings,
    ProviderUnavailable,
    TokenRefused,
)
from flowker.settings import Settings

ROLE_MAP = (("flowker-admins", "admin"), ("ops", "operator"), ("flowker-viewers", "viewer"))


class Clock:
    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def _verifier(provider, *, audience=None, issuer=None, now=time.time, jwks_clock=time.monotonic):
    settings = OidcSettings(issuer=issuer or provider.issuer, audience=audience or provider.audience, role_map=ROLE_MAP)
    jwks = JwksCache(settings.issuer, provider.sessions(Settings()), clock=jwks_clock)
    return BearerTokenVerifier(settings, jwks, now=now)


def _segment(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_providers_token_names_the_person_and_maps_their_roles(people_provider):
    verifier = _verifier(people_provider)
    ada = verifier.verify(people_provider.token("ada"))
    assert ada.subject == "ada" and ada.issuer == people_provider.issuer and ada.roles == ("admin",)
    assert ada.actor_id == f"{people_provider.issuer} ada"
    olu = verifier.verify(people_provider.token("olu"))
    assert olu.roles == ("operator",) and olu.claim_values == ("ops", "unrelated")
    assert verifier.verify(people_provider.token("vic")).roles == ("viewer",)  # a string claim
    # Authenticated, but no claim value the map knows: no role (the API answers 403).
    assert verifier.verify(people_provider.token("nia")).roles == ()
    # The keys were fetched once for all four tokens.
    assert people_provider.stats()["jwks"] == 1 and verifier.jwks.fetches == 1


def test_the_token_is_the_providers_jwt_for_our_audience(people_provider):
    token = people_provider.token("ada")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt" and header["kid"]
    claims = _claims(token)
    assert claims["aud"] == people_provider.audience and claims["iss"] == people_provider.issuer


def test_an_expired_token_is_refused(people_provider):
    token = people_provider.token("ada")
    lifetime = _claims(token)["exp"] - time.time()
    # The provider's clock and ours agree; ours moved past exp plus the leeway.
    verifier = _verifier(people_provider, now=Clock(lifetime + 31))
    with pytest.raises(TokenRefused, match="expired"):
        verifier.verify(token)
    # Within the leeway it still passes.
    assert _verifier(people_provider, now=Clock(lifetime + 20)).verify(token).subject == "ada"


def test_a_token_used_before_nbf_is_refused(people_provider):
    token = people_provider.token("ada")
    claims = _claims(token)
    not_before = claims["nbf"]  # people_provider.mjs sets it, as many providers do
    verifier = _verifier(people_provider, now=lambda: not_before - 31)
    with pytest.raises(TokenRefused, match="not valid yet"):
        verifier.verify(token)


def test_a_token_for_another_audience_or_from_another_issuer_is_refused(people_provider):
    token = people_provider.token("ada")
    with pytest.raises(TokenRefused, match="not meant for this server"):
        _verifier(people_provider, audience="https://other.example.test").verify(token)
    # A verifier expecting another issuer (its keys fetched from this provider): iss differs.
    jwks = JwksCache(people_provider.issuer, people_provider.sessions(Settings()))
    elsewhere = OidcSettings(issuer="https://idp.elsewhere.test", audience=people_provider.audience, role_map=ROLE_MAP)
    with pytest.raises(TokenRefused, match="not issued by https://idp.elsewhere.test"):
        BearerTokenVerifier(elsewhere, jwks).verify(token)


def test_alg_none_is_refused_before_any_key_is_fetched(people_provider):
    claims = _claims(people_provider.token("ada"))
    for algorithm in ("none", "None", "NONE"):
        unsigned = f"{_segment({'alg': algorithm, 'typ': 'JWT'})}.{_segment(claims)}."
        verifier = _verifier(people_provider)
        with pytest.raises(TokenRefused, match="not accepted"):
            verifier.verify(unsigned)
        assert verifier.jwks.fetches == 0


def test_hs256_signed_with_the_providers_public_key_is_refused(people_provider):
    """The classic key-confusion attack: take the RSA public key from the JWKS and use its
    bytes as an HMAC secret."""
    token = people_provider.token("ada")
    kid = jwt.get_unverified_header(token)["kid"]
    jwks = requests.get(people_provider.issuer + "/jwks", verify=people_provider.ca, timeout=5).json()
    public_jwk = next(key for key in jwks["keys"] if key["kid"] == kid)
    public_key = jwt.PyJWK(public_jwk).key
    for encoding in (
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        json.dumps(public_jwk).encode(),
    ):
        signing_input = f"{_segment({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{_segment(_claims(token))}"
        signature = hmac.new(encoding, signing_input.encode(), hashlib.sha256).digest()
        forged = f"{signing_input}.{_segment(signature)}"
        with pytest.raises(TokenRefused, match="not accepted"):
            _verifier(people_provider).verify(forged)


def test_an_unknown_kid_refetches_the_keys_once_then_is_refused(people_provider):
    monotonic = [1000.0]
    verifier = _verifier(people_provider, jwks_clock=lambda: monotonic[0])
    assert verifier.verify(people_provider.token("ada")).subject == "ada"
    assert people_provider.stats()["jwks"] == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {**_claims(people_provider.token("ada")), "sub": "mallory"}
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "rotated-in-key"})
    monotonic[0] += 31  # past the refresh rate limit
    with pytest.raises(TokenRefused, match="unknown kid"):
        verifier.verify(forged)
    assert people_provider.stats()["jwks"] == 2  # fetched again: a rotation would be seen
    # A burst of made-up kids right after does not reach the provider again.
    for attempt in range(5):
        forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": f"made-up-{attempt}"})
        with pytest.raises(TokenRefused, match="unknown kid"):
            verifier.verify(forged)
    assert people_provider.stats()["jwks"] == 2


def test_a_token_signed_by_another_key_under_the_providers_kid_is_refused(people_provider):
    token = people_provider.token("ada")
    kid = jwt.get_unverified_header(token)["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**_claims(token), "sub": "mallory"}, stranger, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(TokenRefused, match="signature does not verify"):
        _verifier(people_provider).verify(forged)
    # Changing a claim of a real token breaks its signature too.
    head, payload, signature = token.split(".")
    tampered = f"{head}.{_segment({**_claims(token), 'sub': 'mallory'})}.{signature}"
    with pytest.raises(TokenRefused, match="signature does not verify"):
        _verifier(people_provider).verify(tampered)


def test_the_issuer_is_held_to_the_ssrf_rules_and_failures_are_not_retried_in_a_burst(people_provider):
    """Outside development, a loopback issuer is refused like a loopback executor (unless
    FLOWKER_ALLOW_PRIVATE_NETWORKS names it), and the refusal is not retried per request."""
    monotonic = [0.0]
    settings = OidcSettings(issuer=people_provider.issuer, audience=people_provider.audience, role_map=ROLE_MAP)
    jwks = JwksCache(
        settings.issuer,
        people_provider.sessions(Settings(env="production")),
        clock=lambda: monotonic[0],
    )
    verifier = BearerTokenVerifier(settings, jwks)
    token = people_provider.token("ada")
    with pytest.raises(ProviderUnavailable, match="127.0.0.1"):
        verifier.verify(token)
    with pytest.raises(ProviderUnavailable):
        verifier.verify(token)
    assert people_provider.stats()["jwks"] == 0
    allowed = Settings(env="production", allow_private_networks=("127.0.0.1/32",))
    jwks = JwksCache(settings.issuer, people_provider.sessions(allowed))
    assert BearerTokenVerifier(settings, jwks).verify(token).subject == "ada"


# ------------------------------------------------------------------ settings and claims (no provider)


def test_oidc_settings_are_checked_when_read():
    from flowker.errors import ConfigurationError

    good = {"oidc_issuer": "https://sso.example.com/realms/acme/", "oidc_audience": "https://flowker.example.com"}
    settings = Settings.from_mapping({**good, "oidc_role_map": "flowker-admins=admin, cn=ops=operator"})
    assert settings.oidc_issuer == "https://sso.example.com/realms/acme"  # no trailing slash
    # The role is after the last "=": claim values may hold "=" (LDAP-style group names).
    assert settings.oidc_role_map == (("flowker-admins", "admin"), ("cn=ops", "operator"))
    assert settings.oidc_roles_claim == "roles"
    for bad, named in (
        ({**good, "oidc_role_map": "a=superuser"}, r"unknown role\(s\) superuser"),
        ({**good, "oidc_role_map": "no-equals-sign"}, "is not claim-value=role"),
        ({**good}, "FLOWKER_OIDC_ROLE_MAP is required"),
        ({"oidc_issuer": good["oidc_issuer"], "oidc_role_map": "a=admin"}, "FLOWKER_OIDC_AUDIENCE is required"),
        ({"oidc_audience": "x", "oidc_role_map": "a=admin"}, "need FLOWKER_OIDC_ISSUER"),
        ({**good, "oidc_issuer": "sso.example.com", "oidc_role_map": "a=admin"}, "https:// URL"),
    ):
        with pytest.raises(ConfigurationError, match=named):
            Settings.from_mapping(bad)


def test_serve_refuses_an_issuer_the_ssrf_rules_forbid_before_it_binds():
    from flowker.api.app import check_settings
    from flowker.errors import ConfigurationError

    values = {"oidc_audience": "a", "oidc_role_map": "g=admin"}
    check_settings(Settings.from_mapping({**values, "oidc_issuer": "https://127.0.0.1:8443"}))  # development
    with pytest.raises(ConfigurationError, match="FLOWKER_OIDC_ISSUER: .*metadata"):
        check_settings(Settings.from_mapping({**values, "oidc_issuer": "http://169.254.169.254/latest"}))


def test_roles_claim_shapes():
    from flowker.security.people_tokens import claim_values, mapped_roles

    claims = {
        "roles": ["a", 7, "b"],
        "realm_access": {"roles": ["ops"]},
        "https://example.com/roles": "admins",
        "group": "solo",
    }
    assert claim_values(claims, "roles") == ("a", "b")  # non-strings ignored
    assert claim_values(claims, "realm_access.roles") == ("ops",)
    assert claim_values(claims, "https://example.com/roles") == ("admins",)
    assert claim_values(claims, "group") == ("solo",)
    assert claim_values(claims, "missing.path") == () and claim_values({"roles": {"x": 1}}, "roles") == ()
    role_map = (("ops", "operator"), ("admins", "admin"), ("ops-too", "operator"))
    assert mapped_roles(("admins", "ops", "ops-too"), role_map) == ("operator", "admin")
    assert mapped_roles(("nobody",), role_map) == ()


def test_an_accepted_token_is_remembered_briefly_and_its_times_still_count(people_provider):
    token = people_provider.token("ada")
    exp = _claims(token)["exp"]
    clock = [time.time()]
    verifier = _verifier(people_provider, now=lambda: clock[0])
    full_checks = []
    check = verifier._verified
    verifier._verified = lambda t: full_checks.append(1) or check(t)  # type: ignore[method-assign]
    assert verifier.verify(token).subject == "ada"
    assert verifier.verify(token).subject == "ada"
    assert len(full_checks) == 1  # the second request cost a hash
    clock[0] += 61  # past the minute a token is remembered: checked in full again
    assert verifier.verify(token).subject == "ada" and len(full_checks) == 2
    clock[0] = exp + 31  # remembered or not, an expired token is refused
    with pytest.raises(TokenRefused, match="expired"):
        verifier.verify(token)
