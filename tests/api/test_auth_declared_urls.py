"""A config field an auth type declares in ``url_fields`` passes the SSRF guard when the
executor is saved, whatever its name (Flowker no longer guesses from ``*_url``)."""

from __future__ import annotations

from requests.auth import AuthBase

from api_helpers import executor_body
from flowker.auth.base import AuthType
from flowker.plugins import load_registry


class _Nothing(AuthBase):
    def __call__(self, request):
        return request


class PartnerAuth(AuthType):
    name = "partner"
    description = "Fetches a token from a declared endpoint."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["endpoint"],
        "properties": {"endpoint": {"type": "string"}, "audience_url": {"type": "string"}},
    }
    url_fields = ("endpoint",)  # audience_url is a name, never fetched

    def build(self, config, context):
        return _Nothing()


def test_a_declared_url_field_is_checked_and_an_undeclared_url_named_one_is_not(make_app, stub):
    import falcon.testing

    from api_helpers import API_KEY

    registry = load_registry(None, entry_points=[])
    registry.register_auth_type(PartnerAuth())
    make_app.registry = registry
    client = falcon.testing.TestClient(make_app(), headers={"X-API-Key": API_KEY})

    metadata = executor_body(
        stub.url, name="p1", authentication={"type": "partner", "config": {"endpoint": "http://169.254.169.254/token"}}
    )
    refused = client.simulate_post("/v1/executors", json=metadata)
    assert refused.status_code == 422 and refused.json["code"] == "FLK-0341"
    assert "authentication.config.endpoint" in refused.json["message"]

    named = executor_body(
        stub.url,
        name="p2",
        authentication={"type": "partner", "config": {"endpoint": stub.url, "audience_url": "http://169.254.169.254/"}},
    )
    created = client.simulate_post("/v1/executors", json=named)
    assert created.status_code == 201, created.json
