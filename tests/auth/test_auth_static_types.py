"""none, api_key, bearer and basic against a local HTTP server that checks the credentials."""

from __future__ import annotations

import base64

import pytest

from flowker.auth.builtin import ApiKeyAuth, BasicAuth, BearerAuth, NoneAuth
from flowker.testing import check_auth_type, check_schema, check_secrets_hidden, make_auth_context, sign_request

API_KEY = "ak_live_0123456789abcdef"
TOKEN = "tok-0123456789abcdefABCDEF"
PASSWORD = "p@ss:word with spaces"


def expecting(header: str, value: str | None = None, query: tuple[str, str] | None = None):
    """A server handler answering 200 only when the credential is exactly where it belongs."""

    def handle(request):
        if query is not None:
            ok = request.query.get(query[0]) == query[1] and request.header("X-Api-Key") is None
        else:
            ok = request.header(header) == value
        return (200, {}, {"ok": True}) if ok else (401, {}, {"ok": False})

    return handle


def test_none_sends_no_credentials():
    recorded = sign_request(NoneAuth(), {}, expect_status=200)
    assert recorded.header("Authorization") is None
    assert NoneAuth().validate_config({"anything": 1}) == [("", "unknown field 'anything'")]


def test_api_key_in_the_default_header():
    sign_request(ApiKeyAuth(), {"key": API_KEY}, handler=expecting("X-API-Key", API_KEY), expect_status=200)


def test_api_key_with_a_custom_header_and_prefix():
    sign_request(
        ApiKeyAuth(),
        {"key": API_KEY, "header_name": "Authorization", "prefix": "ApiKey "},
        handler=expecting("Authorization", "ApiKey " + API_KEY),
        expect_status=200,
    )


def test_api_key_in_the_query_keeps_other_parameters():
    recorded = sign_request(
        ApiKeyAuth(),
        {"key": API_KEY, "location": "query", "query_param_name": "apikey"},
        query={"page": "2"},
        handler=expecting("", query=("apikey", API_KEY)),
        expect_status=200,
    )
    assert recorded.query == {"page": "2", "apikey": API_KEY}


def test_bearer_sets_the_authorization_header():
    sign_request(
        BearerAuth(), {"token": TOKEN}, handler=expecting("Authorization", f"Bearer {TOKEN}"), expect_status=200
    )


def test_basic_sets_http_basic_credentials():
    expected = "Basic " + base64.b64encode(f"svc-user:{PASSWORD}".encode()).decode()
    sign_request(
        BasicAuth(),
        {"username": "svc-user", "password": PASSWORD},
        handler=expecting("Authorization", expected),
        expect_status=200,
    )


def test_a_wrong_credential_is_refused_by_the_checking_server():
    sign_request(
        BearerAuth(),
        {"token": "wrong-token-value"},
        handler=expecting("Authorization", f"Bearer {TOKEN}"),
        expect_status=401,
    )


@pytest.mark.parametrize(
    "auth_type, config",
    [
        (ApiKeyAuth(), {"key": API_KEY}),
        (ApiKeyAuth(), {"key": API_KEY, "location": "query"}),
        (BearerAuth(), {"token": TOKEN}),
        (BasicAuth(), {"username": "svc-user", "password": PASSWORD}),
    ],
)
def test_the_plugin_author_kit_passes_for_the_built_ins(auth_type, config):
    check_auth_type(auth_type, config)


def test_none_has_a_valid_schema_and_no_secrets():
    check_schema(NoneAuth())
    assert NoneAuth().secret_fields == ()


@pytest.mark.parametrize(
    "auth_type, config, problem",
    [
        (ApiKeyAuth(), {}, ("", "missing required field 'key'")),
        (ApiKeyAuth(), {"key": API_KEY, "location": "cookie"}, ("location", "must be one of 'header', 'query'")),
        (ApiKeyAuth(), {"key": API_KEY, "header_name": "Bad Header"}, ("header_name", None)),
        (BearerAuth(), {"token": ""}, ("token", "must be at least 1 characters long")),
        (BasicAuth(), {"username": "u"}, ("", "missing required field 'password'")),
    ],
)
def test_config_problems_are_specific(auth_type, config, problem):
    problems = auth_type.validate_config(config)
    assert problem[0] in [path for path, _ in problems]
    if problem[1] is not None:
        assert problem in problems


def test_registered_secrets_are_not_required_for_static_types():
    registered: list = []
    BearerAuth().build({"token": TOKEN}, make_auth_context(registered))
    assert registered == []  # static secrets are registered by the runner when it resolves them
    check_secrets_hidden(BearerAuth(), {"token": TOKEN})
