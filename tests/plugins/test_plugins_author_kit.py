"""flowker.testing catches the mistakes it promises to catch (each check can fail)."""

from __future__ import annotations

import logging

import pytest
from requests.auth import AuthBase

from flowker.auth.base import AuthType
from flowker.auth.builtin import BearerAuth
from flowker.testing import (
    check_auth_type,
    check_builds,
    check_schema,
    check_secrets_hidden,
    sign_request,
    with_canaries,
)

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["token"],
    "properties": {"token": {"type": "string", "minLength": 1, "writeOnly": True}},
}


class _Header(AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = "Bearer " + self.token
        return request

    def __repr__(self):
        return "<header ****>"


class LeaksInRepr(AuthType):
    name = "leaks_in_repr"
    description = "repr shows the token"
    config_schema = SCHEMA

    def build(self, config, context):
        class Leaky(_Header):
            def __repr__(self):
                return f"<Leaky {self.token}>"

        return Leaky(config["token"])


class LeaksInLogs(AuthType):
    name = "leaks_in_logs"
    description = "logs the token at DEBUG"
    config_schema = SCHEMA

    def build(self, config, context):
        logging.getLogger("some_plugin").debug("built with token %s", config["token"])
        return _Header(config["token"])


class LeaksInErrors(AuthType):
    name = "leaks_in_errors"
    description = "puts the config in its error"
    config_schema = {**SCHEMA, "additionalProperties": True}

    def validate_config(self, config):
        return [("token", f"bad value {config.get('token')!r}")] if not isinstance(config.get("token"), str) else []

    def build(self, config, context):
        if not isinstance(config.get("token"), str):
            raise ValueError(f"cannot use {config}")
        return _Header(config["token"])


class SecretNotMarked(AuthType):
    name = "secret_not_marked"
    description = "forgets writeOnly"
    config_schema = {"type": "object", "properties": {"client_secret": {"type": "string"}}}


class BadSchema(AuthType):
    name = "bad_schema"
    description = "not a schema"
    config_schema = {"type": "object", "properties": {"x": {"type": "no-such-type"}}}


def test_the_kit_passes_a_correct_type_and_returns_the_signed_request():
    recorded = check_auth_type(BearerAuth(), {"token": "t0k3n-0123456789"})
    assert recorded.header("Authorization") == "Bearer t0k3n-0123456789"


def test_a_secret_in_repr_is_caught():
    with pytest.raises(AssertionError, match=r"appears in repr\(auth\)"):
        check_secrets_hidden(LeaksInRepr(), {"token": "x"})


def test_a_secret_in_a_debug_log_is_caught():
    with pytest.raises(AssertionError, match="appears in a log record of 'some_plugin'"):
        check_secrets_hidden(LeaksInLogs(), {"token": "x"})


def test_a_secret_in_validation_problems_or_build_errors_is_caught():
    with pytest.raises(AssertionError, match="appears in (validation problems|the error building)"):
        check_secrets_hidden(LeaksInErrors(), {"token": "x"})


def test_an_unmarked_secret_field_and_an_invalid_schema_are_caught():
    with pytest.raises(AssertionError, match="looks secret"):
        check_schema(SecretNotMarked())
    with pytest.raises(AssertionError, match="not valid Draft 2020-12"):
        check_schema(BadSchema())


def test_an_invalid_sample_config_is_reported():
    with pytest.raises(AssertionError, match="sample config of 'bearer' is invalid"):
        check_builds(BearerAuth(), {"tokn": "x"})


def test_canaries_fill_every_secret_field_within_its_length_limits():
    filled, canaries = with_canaries(BearerAuth(), {"token": "x"})
    assert filled["token"] == canaries[0] and canaries[0].startswith("flowkercanary")


def test_sign_request_checks_the_expected_status():
    with pytest.raises(AssertionError, match="answered 401, expected 200"):
        sign_request(BearerAuth(), {"token": "abc"}, handler=lambda request: (401, {}, {}), expect_status=200)


def test_the_fixtures_work(auth_context, local_server, registered_secrets):
    assert auth_context.new_session().trust_env is False
    auth_context.register_secret("value")
    assert registered_secrets == ["value"]
    assert local_server.url.startswith("http://127.0.0.1:")
