"""The static-credential auth types: none, api_key, bearer and basic.

They are registered through the same hook as third-party plugins, each as its own plugin
(named after the type: ``FLOWKER_DISABLED_PLUGINS=bearer`` switches off just that one; see
:data:`flowker.plugins.BUILTIN_PLUGINS`).
"""

from __future__ import annotations

from typing import Any, Mapping

from requests.auth import AuthBase, HTTPBasicAuth

from flowker.auth.base import AuthContext, AuthType


class _NoAuth(AuthBase):
    def __call__(self, request):
        return request


class _HeaderAuth(AuthBase):
    """Sets one header. Its repr never shows the value."""

    def __init__(self, header: str, value: str):
        self._header = header
        self._value = value

    def __call__(self, request):
        request.headers[self._header] = self._value
        return request

    def __repr__(self):
        return f"<header auth {self._header}: ****>"


class _QueryAuth(AuthBase):
    def __init__(self, parameter: str, value: str):
        self._parameter = parameter
        self._value = value

    def __call__(self, request):
        request.prepare_url(request.url, {self._parameter: self._value})
        return request

    def __repr__(self):
        return f"<query auth {self._parameter}=****>"


class _BasicAuth(HTTPBasicAuth):
    def __repr__(self):
        return "<basic auth ****>"


class NoneAuth(AuthType):
    name = "none"
    description = "No authentication."
    config_schema = {"type": "object", "additionalProperties": False, "properties": {}}
    sends_credentials = False

    def build(self, config: dict, context: AuthContext) -> AuthBase:
        return _NoAuth()


class ApiKeyAuth(AuthType):
    name = "api_key"
    description = "An API key sent in a header (optionally prefixed) or a query parameter."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["key"],
        "properties": {
            "key": {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True},
            "header_name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "default": "X-API-Key",
                "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
            },
            "prefix": {"type": "string", "maxLength": 100, "default": ""},
            "location": {"enum": ["header", "query"], "default": "header"},
            "query_param_name": {"type": "string", "minLength": 1, "maxLength": 100, "default": "api_key"},
        },
    }

    def credential_headers(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        if config.get("location", "header") == "query":
            return ()
        header = config.get("header_name", "X-API-Key")
        return (header,) if isinstance(header, str) and header else ()

    def build(self, config: dict, context: AuthContext) -> AuthBase:
        if config.get("location", "header") == "query":
            return _QueryAuth(config.get("query_param_name", "api_key"), config["key"])
        return _HeaderAuth(config.get("header_name", "X-API-Key"), config.get("prefix", "") + config["key"])


class BearerAuth(AuthType):
    name = "bearer"
    description = "A static bearer token: Authorization: Bearer <token>."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["token"],
        "properties": {"token": {"type": "string", "minLength": 1, "maxLength": 16384, "writeOnly": True}},
    }

    def credential_headers(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return ("Authorization",)

    def build(self, config: dict, context: AuthContext) -> AuthBase:
        return _HeaderAuth("Authorization", f"Bearer {config['token']}")


class BasicAuth(AuthType):
    name = "basic"
    description = "HTTP Basic authentication with a username and password."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "minLength": 1, "maxLength": 256},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024, "writeOnly": True},
        },
    }

    def credential_headers(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return ("Authorization",)

    def build(self, config: dict, context: AuthContext) -> AuthBase:
        return _BasicAuth(config["username"], config["password"])


__all__ = ["NoneAuth", "ApiKeyAuth", "BearerAuth", "BasicAuth"]
