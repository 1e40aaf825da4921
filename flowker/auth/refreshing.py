"""A bearer ``AuthBase`` whose token comes from a cache, with one refetch after a 401.

How the 401 refetch works (nothing for the caller to do): :meth:`RefreshingBearerAuth.__call__`
sets ``Authorization: Bearer <token>`` and registers :meth:`RefreshingBearerAuth.handle_401`
as a ``response`` hook on the prepared request. ``requests.Session.send`` runs that hook
on the answer. When the answer is a 401, the hook tells the token source that this token
was refused (the cache forgets it, unless another thread already replaced it), gets a
token again (one token request, shared by every thread that saw the same 401), re-sends
the same request once through the same transport adapter (the SSRF-pinned one) and
returns that second response; its ``history`` holds the 401. A second 401 is returned as
it is: no loop, no exception. Streamed bodies (generators, files) are not re-sent.
"""

from __future__ import annotations

import logging
from typing import Protocol

import requests
from requests.auth import AuthBase

logger = logging.getLogger(__name__)

BEARER_PREFIX = "Bearer "


class TokenSource(Protocol):
    """Where a :class:`RefreshingBearerAuth` gets its access tokens."""

    def access_token(self) -> str:
        """A valid access token (cached, or fetched now). Raises AuthTypeError on failure."""

    def refused(self, access_token: str) -> None:
        """The resource server answered 401 to ``access_token``: stop using it."""


class RefreshingBearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` from a :class:`TokenSource`; one refetch after a 401.

    ``handles_401`` tells a caller (the runner) that a 401 it sees has already been
    retried with a fresh token, so it should fail the step rather than retry again.
    """

    handles_401 = True

    def __init__(self, source: TokenSource, description: str = "bearer token"):
        self._source = source
        self._description = description

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = BEARER_PREFIX + self._source.access_token()
        request.register_hook("response", self.handle_401)
        return request

    def handle_401(self, response: requests.Response, **send_kwargs) -> requests.Response:
        """The ``response`` hook: on a 401, refetch the token once and re-send once."""
        if response.status_code != 401:
            return response
        original = response.request
        if not _resendable(original.body):
            return response
        used = _bearer_of(original)
        if used is not None:
            self._source.refused(used)
        # Free the connection before sending again (as requests' own digest auth does).
        _ = response.content
        response.close()
        retry = original.copy()
        # The copy keeps the hooks; without ours the second answer is returned as it is.
        retry.hooks = {
            event: [hook for hook in hooks if hook != self.handle_401] for event, hooks in original.hooks.items()
        }
        retry.headers["Authorization"] = BEARER_PREFIX + self._source.access_token()
        logger.info("%s was refused with HTTP 401; retrying once with a new token", self._description)
        second = response.connection.send(retry, **send_kwargs)
        second.history.append(response)
        second.request = retry
        return second

    def __repr__(self) -> str:
        return f"<RefreshingBearerAuth {self._description}: ****>"


def _bearer_of(request: requests.PreparedRequest) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[len(BEARER_PREFIX) :] if value.startswith(BEARER_PREFIX) else None


def _resendable(body) -> bool:
    return body is None or isinstance(body, (bytes, str))
