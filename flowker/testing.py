"""The plugin author kit: pytest helpers that check an auth type.

Plain functions (usable from any test) and a few fixtures. Enable the fixtures with
``pytest_plugins = ["flowker.testing"]`` in your ``conftest.py``; the functions need
nothing::

    from flowker.testing import check_auth_type

    def test_my_type():
        recorded = check_auth_type(MyAuth(), {"key_id": "k1", "secret": "x" * 32})
        assert recorded.header("X-Signature")

What is checked:

* :func:`check_schema` - the config schema is valid JSON Schema Draft 2020-12, an object
  schema, and every secret field is marked ``"writeOnly": true`` and holds a string;
* :func:`check_builds` - a sample config validates and builds a ``requests`` auth;
* :func:`check_secrets_hidden` - with every secret field set to a random canary, no canary
  shows in ``repr``/``str`` of the type or the built auth, in any log record at DEBUG
  while building and sending, or in the problems and errors of bad configs;
* :func:`sign_request` - the built auth sends a request to a real local HTTP server; the
  recorded request is returned for your own assertions: a :class:`RecordedRequest`
  (``method``, ``path``, ``query``, ``headers``, ``body``; ``header(name)`` reads a header
  case-insensitively, ``json()`` parses the body).

Install with ``pip install "flowker[testing]"`` (it brings pytest).
"""

from __future__ import annotations

import copy
import logging
import secrets as _secrets
from contextlib import contextmanager
from typing import Iterator

import jsonschema
import pytest
import requests

from flowker.auth.base import AuthContext, AuthType
from flowker.local_server import LocalHTTPServer, RecordedRequest, json_ok
from flowker.security.redaction import is_secret_key

CANARY_PREFIX = "flowkercanary"
# Transport loggers log URLs; Flowker's process redactor scrubs those in production.
DEFAULT_IGNORED_LOGGERS = ("urllib3",)

__all__ = [
    "CANARY_PREFIX",
    "new_canary",
    "make_auth_context",
    "check_schema",
    "check_builds",
    "with_canaries",
    "check_secrets_hidden",
    "sign_request",
    "check_auth_type",
    "capture_logs",
    "auth_context",
    "local_server",
    "registered_secrets",
    "RecordedRequest",
]


def new_canary() -> str:
    """A random secret-looking value that is easy to search for."""
    return CANARY_PREFIX + _secrets.token_hex(16)


def make_auth_context(registered: list | None = None, **overrides) -> AuthContext:
    """An AuthContext for tests: a plain session (no proxies from the environment) and
    ``register_secret`` appending to ``registered``."""
    sink = registered if registered is not None else []

    def new_session() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    values: dict = {"new_session": new_session, "register_secret": sink.append}
    values.update(overrides)
    return AuthContext(**values)


# --------------------------------------------------------------------------- schema


def check_schema(auth_type: AuthType) -> None:
    """The type's name, description and config schema are well formed."""
    assert isinstance(auth_type, AuthType), f"{auth_type!r} does not subclass flowker.auth.base.AuthType"
    assert isinstance(auth_type.name, str) and auth_type.name, "the auth type has no name"
    assert auth_type.name.replace("_", "").isalnum() and auth_type.name == auth_type.name.lower(), (
        f"auth type name {auth_type.name!r} should be lower_snake_case"
    )
    assert isinstance(auth_type.description, str) and auth_type.description.strip(), (
        f"auth type {auth_type.name!r} has no description"
    )
    schema = auth_type.config_schema
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise AssertionError(f"config_schema of {auth_type.name!r} is not valid Draft 2020-12: {exc.message}") from None
    assert schema.get("type") == "object", f"config_schema of {auth_type.name!r} must be an object schema"
    properties = schema.get("properties", {})
    for name in auth_type.secret_fields:
        field_type = properties[name].get("type")
        assert field_type == "string" or (isinstance(field_type, list) and "string" in field_type), (
            f"secret field {name!r} of {auth_type.name!r} should be a string"
        )
    for name, spec in properties.items():
        if spec.get("writeOnly"):
            continue
        # The same rule Flowker's redactor uses for key names (client_secret, api_token...).
        assert not is_secret_key(name), f'field {name!r} of {auth_type.name!r} looks secret: mark it "writeOnly": true'


# --------------------------------------------------------------------------- building


def check_builds(auth_type: AuthType, config: dict, context: AuthContext | None = None) -> requests.auth.AuthBase:
    """``config`` validates against the type's schema and builds a requests auth."""
    problems = auth_type.validate_config(config)
    assert problems == [], f"sample config of {auth_type.name!r} is invalid: {problems}"
    auth = auth_type.build(copy.deepcopy(config), context or make_auth_context())
    assert callable(auth), f"{auth_type.name!r}.build() did not return a requests auth"
    return auth


def with_canaries(auth_type: AuthType, config: dict) -> tuple[dict, list[str]]:
    """A copy of ``config`` with every secret field (``writeOnly``) set to a new canary.

    Optional secret fields are filled too, so their handling is checked as well. Returns
    the config and the canaries.
    """
    filled = copy.deepcopy(config)
    canaries = []
    properties = auth_type.config_schema.get("properties", {})
    for name in auth_type.secret_fields:
        canary = _fitting_canary(properties.get(name, {}))
        filled[name] = canary
        canaries.append(canary)
    return filled, canaries


def _fitting_canary(spec: dict) -> str:
    canary = new_canary()
    minimum, maximum = spec.get("minLength", 0), spec.get("maxLength")
    while len(canary) < minimum:
        canary += _secrets.token_hex(8)
    if maximum is not None and len(canary) > maximum:
        canary = canary[:maximum]
    return canary


@contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """Every log record of the process at ``level`` and above while the block runs."""
    records: list[logging.LogRecord] = []

    class _Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler = _Collector(level)
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def _formatted(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001
        text = f"{record.msg} {record.args}"
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text + (record.exc_text or "") + (record.stack_info or "")


def _assert_hidden(where: str, text: str, canaries: list[str]) -> None:
    for canary in canaries:
        assert canary not in text, f"a secret value appears in {where}: {text[:300]!r}"


def _bad_configs(auth_type: AuthType, config: dict, canaries: list[str]) -> Iterator[tuple[str, dict]]:
    """Invalid variants of ``config`` that still carry the canaries somewhere."""
    properties = auth_type.config_schema.get("properties", {})
    for name in auth_type.secret_fields:
        canary = config[name]
        yield f"{name} as a list", {**config, name: [canary]}
        yield f"{name} as an object", {**config, name: {"value": canary}}
        maximum = properties.get(name, {}).get("maxLength")
        if maximum:
            yield f"{name} too long", {**config, name: canary * (maximum // len(canary) + 2)}
    for required in auth_type.config_schema.get("required", []):
        if required not in auth_type.secret_fields:
            yield f"without {required}", {k: v for k, v in config.items() if k != required}
    yield "an unknown field", {**config, "unknown_field_" + _secrets.token_hex(4): canaries[0] if canaries else "x"}


def check_secrets_hidden(
    auth_type: AuthType,
    config: dict,
    context: AuthContext | None = None,
    ignore_loggers: tuple[str, ...] = DEFAULT_IGNORED_LOGGERS,
    handler=json_ok,
) -> list[str]:
    """Secrets never appear in reprs, DEBUG logs, validation problems or build errors.

    Builds ``config`` with canaries in every secret field, sends a request with it while
    capturing every log record at DEBUG, then tries bad configs. Returns the canaries.
    """
    filled, canaries = with_canaries(auth_type, config)
    assert canaries, f"{auth_type.name!r} has no secret fields (writeOnly) to check"
    context = context or make_auth_context()
    with capture_logs() as records:
        auth = check_builds(auth_type, filled, context)
        for where, text in (
            ("repr(auth type)", repr(auth_type)),
            ("str(auth type)", str(auth_type)),
            ("repr(auth)", repr(auth)),
            ("str(auth)", str(auth)),
        ):
            _assert_hidden(where, text, canaries)
        with LocalHTTPServer(handler) as server:
            with _session() as session:
                session.post(server.url + "/flowker-kit", data=b'{"kit": true}', auth=auth, timeout=10)
        for name, bad in _bad_configs(auth_type, filled, canaries):
            problems = auth_type.validate_config(bad)
            assert problems, f"bad config ({name}) of {auth_type.name!r} was accepted"
            _assert_hidden(f"validation problems for a config with {name}", repr(problems), canaries)
            try:
                auth_type.build(copy.deepcopy(bad), context)
            except Exception as exc:  # noqa: BLE001 - any error is fine, as long as it keeps the secret
                _assert_hidden(f"the error building a config with {name}", f"{exc!s} {exc!r}", canaries)
    for record in records:
        if record.name.split(".")[0] in ignore_loggers:
            continue
        _assert_hidden(f"a log record of {record.name!r}", _formatted(record), canaries)
    return canaries


# --------------------------------------------------------------------------- sending


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def sign_request(
    auth_type: AuthType,
    config: dict,
    *,
    method: str = "POST",
    path: str = "/resource",
    query: dict | None = None,
    body: bytes | str | None = b'{"hello": "world"}',
    headers: dict | None = None,
    context: AuthContext | None = None,
    handler=json_ok,
    expect_status: int | None = None,
) -> RecordedRequest:
    """Send one request with the built auth to a real local HTTP server; return what it got.

    ``handler`` (``RecordedRequest -> (status, headers, body)``) lets the server check the
    credentials; ``expect_status`` asserts the answer's status.
    """
    auth = check_builds(auth_type, config, context)
    with LocalHTTPServer(handler) as server, _session() as session:
        response = session.request(
            method, server.url + path, params=query, data=body, headers=headers, auth=auth, timeout=10
        )
        assert server.requests, "the request never reached the local server"
        recorded = server.requests[-1]
    if expect_status is not None:
        assert response.status_code == expect_status, (
            f"the local server answered {response.status_code}, expected {expect_status}"
        )
    return recorded


def check_auth_type(
    auth_type: AuthType, sample_config: dict, context: AuthContext | None = None, handler=json_ok
) -> RecordedRequest:
    """Every check at once; returns the request the sample config signed."""
    check_schema(auth_type)
    check_builds(auth_type, sample_config, context)
    check_secrets_hidden(auth_type, sample_config, context, handler=handler)
    return sign_request(auth_type, sample_config, context=context, handler=handler)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def registered_secrets() -> list:
    """The values the auth type under test passed to ``context.register_secret``."""
    return []


@pytest.fixture
def auth_context(registered_secrets) -> AuthContext:
    """An AuthContext with a plain session; registered secrets land in ``registered_secrets``."""
    return make_auth_context(registered_secrets)


@pytest.fixture
def local_server() -> Iterator[LocalHTTPServer]:
    """A started LocalHTTPServer (records requests, answers 200 JSON); stopped afterwards."""
    with LocalHTTPServer() as server:
        yield server
