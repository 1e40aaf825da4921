"""What an auth type declares (secret fields, URL fields, credential headers) and the
defaults a type that declares nothing gets from its config schema."""

from __future__ import annotations

from flowker.auth.base import AuthenticationSpec, AuthType
from flowker.auth.builtin import ApiKeyAuth, BasicAuth, BearerAuth, NoneAuth
from flowker.auth.oidc import OIDCClientCredentialsAuth, OIDCUserAuth


class Undeclared(AuthType):
    name = "undeclared"
    config_schema = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "writeOnly": True},
            "callback_url": {"type": "string"},
            "endpoint": {"type": "string", "format": "uri"},
            "header_name": {"type": "string"},
            "label": {"type": "string"},
        },
    }


def test_a_type_that_declares_nothing_gets_defaults_from_its_schema():
    auth_type = Undeclared()
    assert auth_type.secret_fields == ("token",)
    assert auth_type.url_fields == ("callback_url", "endpoint")
    assert auth_type.credential_headers({"header_name": "X-Partner"}) == ("X-Partner",)
    assert auth_type.credential_headers({"header_name": {"$env": "H"}}) == ()
    assert auth_type.sends_credentials


def test_the_built_in_declarations():
    assert ApiKeyAuth().credential_headers({"key": "k"}) == ("X-API-Key",)
    assert ApiKeyAuth().credential_headers({"key": "k", "header_name": "X-Partner"}) == ("X-Partner",)
    assert ApiKeyAuth().credential_headers({"key": "k", "location": "query"}) == ()
    assert BearerAuth().credential_headers({}) == BasicAuth().credential_headers({}) == ("Authorization",)
    assert OIDCClientCredentialsAuth().url_fields == OIDCUserAuth().url_fields == ("issuer_url",)
    assert OIDCUserAuth().secret_fields == ("client_secret", "password")
    assert NoneAuth().sends_credentials is False and NoneAuth().credential_headers({}) == ()


def test_the_authentication_spec_is_typed_from_the_spec_block():
    assert AuthenticationSpec.from_spec(None) == AuthenticationSpec("none", {})
    spec = AuthenticationSpec.from_spec({"type": "bearer", "config": {"token": {"$env": "T"}}})
    assert (spec.type, dict(spec.config)) == ("bearer", {"token": {"$env": "T"}})
    assert AuthenticationSpec.from_spec(spec) is spec
