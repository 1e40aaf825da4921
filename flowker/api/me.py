"""``GET /v1/me``: who the caller is, so a client (the web console) offers only what the
caller's roles allow. Reads nothing but the request's principal."""

from __future__ import annotations

import falcon

from flowker.access import Permission, Principal
from flowker.access.principal import ROLE_ORDER
from flowker.api.authentication import require_principal


def principal_body(principal: Principal) -> dict:
    """The answer for ``principal``: roles in the roles table's order, permissions sorted."""
    return {
        "name": principal.name,
        "kind": principal.kind.value,
        "roles": [role.value for role in ROLE_ORDER if role in principal.roles],
        "permissions": sorted(p.value for p in principal.permissions if p is not Permission.PUBLIC),
        "workflows": None if principal.workflows is None else sorted(principal.workflows),
    }


class Me:
    uses_database = False

    def __init__(self, state):
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = principal_body(require_principal(req))
