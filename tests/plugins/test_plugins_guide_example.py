"""The plugin guide's ``acme`` example (run from plugins/README.md itself) passes the author
kit, and Flowker strips its header when an executor redirects to another origin."""

from __future__ import annotations

import pytest

from flowker.local_server import LocalHTTPServer
from flowker.security.secrets import SecretResolver
from flowker.testing import check_auth_type, make_auth_context

from plugin_guide import acme_example


def test_the_guides_acme_example_passes_the_kit():
    recorded = check_auth_type(acme_example().AcmeAuth(), {"token": "a-sample-token-value"})
    assert recorded.header("X-Acme-Token") == "a-sample-token-value"


def test_the_guides_acme_header_does_not_follow_a_redirect_to_another_origin():
    from flowker.security.http import new_session
    from flowker.security.ssrf import AddressPolicy

    auth = acme_example().AcmeAuth().build({"token": "a-sample-token-value"}, make_auth_context())
    with (
        LocalHTTPServer() as elsewhere,
        LocalHTTPServer(lambda request: (307, {"Location": elsewhere.url + "/landed"}, b"")) as origin,
    ):
        session = new_session(AddressPolicy(allow_loopback=True))
        try:
            response = session.get(origin.url + "/start", auth=auth, timeout=5)
        finally:
            session.close()
        assert response.status_code == 200
        assert origin.requests[0].header("X-Acme-Token") == "a-sample-token-value"
        assert elsewhere.requests[0].path == "/landed" and elsewhere.requests[0].header("X-Acme-Token") is None


def test_a_secret_resolver_cannot_exist_without_the_redactor():
    with pytest.raises(TypeError):
        SecretResolver()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SecretResolver(register=None)  # type: ignore[arg-type]
