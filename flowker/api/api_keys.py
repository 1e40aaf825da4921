"""``/v1/api-keys``: create (the key is answered once), list (never the keys), revoke.
Admin only (flowker.access.routes); every change is audited by the store."""

from __future__ import annotations

import falcon

from flowker.api.bodies import json_object
from flowker.storage.models import utcnow


class Collection:
    def __init__(self, state):
        self.state = state

    def on_post(self, req, resp) -> None:
        body = json_object(req)
        allowed = {"name", "role", "workflows", "expires"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            from flowker.api.errors import bad_body

            raise bad_body(f"unknown field(s) {', '.join(repr(n[:50]) for n in unknown[:5])} in the API key request")
        expires = body.get("expires")
        stored, key = self.state.api_keys.create(
            body.get("name"),
            str(body.get("role", "")),
            req.context.actor,
            workflows=body.get("workflows"),
            expires=expires if isinstance(expires, str) or expires is None else str(expires),
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

    def on_delete(self, req, resp, name: str) -> None:
        self.state.api_keys.revoke(name, req.context.actor)
        resp.status = falcon.HTTP_204
