"""The W3C trace context Flowker sends an executor (``traceparent``, ``tracestate``, see
flowker.tracing) follows a redirect within the executor's origin and is dropped, like
the credentials, on a hop to another origin. Real local servers on 127.0.0.1: another
port is another origin."""

from __future__ import annotations

import pytest

from flowker.security.http import send_request

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_HEADERS = {"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"}


def _lowered(headers: dict) -> dict:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize("sender", ["send_request", "session.request"])
def test_trace_context_stays_within_the_origin(sender, local_server, session):
    origin, other = local_server("127.0.0.1"), local_server("127.0.0.1")
    origin.route("/same", lambda h: h.reply(307, headers={"Location": "/landed"}))
    origin.route("/away", lambda h: h.reply(307, headers={"Location": other.url("/landed")}))

    def send(path: str):
        if sender == "send_request":
            return send_request(session(), "GET", origin.url(path), headers=dict(TRACE_HEADERS), timeout=5)
        return session().get(origin.url(path), headers=dict(TRACE_HEADERS), timeout=5)

    assert send("/same").status_code == 200
    landed = _lowered(origin.requests[-1]["headers"])
    assert origin.requests[-1]["path"] == "/landed"
    assert landed["traceparent"] == TRACEPARENT and landed["tracestate"] == "vendor=opaque"

    assert send("/away").status_code == 200
    assert _lowered(origin.requests[-1]["headers"])["traceparent"] == TRACEPARENT  # the first hop had it
    elsewhere = _lowered(other.requests[-1]["headers"])
    assert "traceparent" not in elsewhere and "tracestate" not in elsewhere
