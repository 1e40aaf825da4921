"""``/v1/api-keys``: create (the key is answered once), list (never the keys), revoke.
Admin only (flowker.access.routes); every change is audited by the store."""

from __future__ import annotations

import falcon

from flowker.api.bodies import json_object
from flowker.storage.models import utcnow


def _refuse_unknown(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        from flowker.api.errors import bad_body

        raise bad_body(f"unknown field(s) {', '.join(repr(n[:50]) for n in unknown[:5])} in the API key request")


def _invalid(message: str):
    from flowker.errors import UnprocessableEntity
    from flowker.error_codes import ErrorCode

    return UnprocessableEntity(message, code=ErrorCode.INVALID_API_KEY_REQUEST)


class Collection:
    def __init__(self, state):
        self.state = state

    def on_post(self, req, resp) -> None:
        body = json_object(req)
        _refuse_unknown(body, {"name", "role", "workflows", "expires"})
        # As the document states them: absent, or of the right type (null is not "absent").
        expires = body.get("expires")
        workflows = body.get("workflows")
        if "workflows" in body and not isinstance(workflows, list):
            raise _invalid("workflows must be a list of workflow names (leave it out for every workflow)")
        if "expires" in body and not isinstance(expires, str):
            raise _invalid("expires must be a duration (90d) or an ISO 8601 time (leave it out for never)")
        if not isinstance(body.get("role"), str):
            raise _invalid("role must be one of viewer, operator, editor, auditor, admin, webhook")
        stored, key = self.state.api_keys.create(
            body.get("name"),
            body["role"],
            req.context.actor,
            workflows=workflows,
            expires=expires,
        )
        view = stored.to_dict(utcnow())
        resp.status = falcon.HTTP_201
        resp.media = {
            "name": view["name"],
            "role": view["role"],
            "workflows": view["workflows"],
            "key": key,
            "createdAt": view["createdAt"],
            "expiresAt": view["expiresAt"],
        }

    def on_get(self, req, resp) -> None:
        now = utcnow()
        resp.media = {"items": [key.to_dict(now) for key in self.state.api_keys.list()]}


class Item:
    def __init__(self, state):
        self.state = state

    def on_patch(self, req, resp, name: str) -> None:
        from flowker.catalog.api_keys import UNCHANGED

        body = json_object(req)
        _refuse_unknown(body, {"role", "workflows", "expires"})
        if "role" in body and not isinstance(body["role"], str):
            raise _invalid("role must be a string")
        workflows = body.get("workflows", UNCHANGED)
        if workflows is not UNCHANGED and workflows is not None and not isinstance(workflows, list):
            raise _invalid("workflows must be a list of workflow names, or null for every workflow")
        expires = body.get("expires", UNCHANGED)
        if expires is not UNCHANGED and expires is not None and not isinstance(expires, str):
            raise _invalid("expires must be a duration (90d) or an ISO 8601 time, or null for never")
        stored = self.state.api_keys.change(
            name, req.context.actor, role=body.get("role"), workflows=workflows, expires=expires
        )
        resp.media = stored.to_dict(utcnow())

    def on_delete(self, req, resp, name: str) -> None:
        self.state.api_keys.revoke(name, req.context.actor)
        resp.status = falcon.HTTP_204
