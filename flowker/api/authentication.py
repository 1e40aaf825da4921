"""Who is calling (authentication) and whether they may (authorization), DESIGN §13.

:class:`AuthenticationMiddleware` (``process_request``) turns a credential into a
:class:`flowker.access.Principal` and the audit actor, or answers 401:

1. ``X-API-Key``: the keys of ``FLOWKER_API_KEYS`` (compared in constant time against
   every one), then the keys stored in the database (``key_lookup``: one indexed read per
   request, no cache, so a revocation counts on every server at once).
2. ``Authorization: Bearer <token>``: handed to ``bearer_authenticator`` (a person's JWT,
   when an OpenID issuer is configured); without one, 401.
3. Nothing, on a webhook route: the request goes on without a principal; the webhook
   resource then either accepts a signed call or answers 401 (:func:`require_principal`).

:class:`AuthorizationMiddleware` (``process_resource``) checks the operation's permission
(:mod:`flowker.access.routes`) and answers 403 ``FLK-0403`` (audited) when the principal's
roles do not grant it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Callable

import falcon

from flowker.access import Permission, Principal, PrincipalKind, Role
from flowker.access.routes import OPERATION_PERMISSIONS, UNSCOPED_ONLY, roles_for
from flowker.errors import Forbidden, Unauthorized

# Reachable without a credential: the probes only (DESIGN §5). The version and the API
# description say what runs here, so they need a key like everything else.
PUBLIC_PATHS = frozenset({"/health", "/health/live", "/health/ready"})
# The web console's pages and files (flowker.console): public, since they hold no data;
# their scripts call /v1 with the signed-in credential.
CONSOLE_PATH = "/ui"
WEBHOOK_PREFIX = "/v1/webhooks/"

BearerAuthenticator = Callable[[str], Principal]
KeyLookup = Callable[[str], "Principal | None"]


class EnvironmentKeys:
    """The keys of ``FLOWKER_API_KEYS``, as digests: comparison time depends on neither
    the keys' contents nor their lengths, and every key is compared every time."""

    def __init__(self, api_keys):
        self.keys = tuple(
            (hashlib.sha256(key.key.encode()).digest(), Principal(PrincipalKind.API_KEY, key.name, key.role))
            for key in api_keys
        )

    def match(self, presented: str) -> Principal | None:
        candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for digest, principal in self.keys:
            if hmac.compare_digest(candidate, digest) and found is None:
                found = principal
        return found


def _actor(principal: Principal | None, ip: str):
    from flowker.audit.chain import Actor

    if principal is None:
        return Actor(type="anonymous", id="anonymous", ip=ip)
    return Actor(type=principal.actor_type, id=principal.name, ip=ip)


class AuthenticationMiddleware:
    """Sets ``req.context.principal`` (None on public paths and on a webhook call without
    a credential) and ``req.context.actor``; 401 when a credential is missing or wrong."""

    def __init__(
        self,
        api_keys,
        *,
        key_lookup: KeyLookup | None = None,
        bearer_authenticator: BearerAuthenticator | None = None,
        open_connection: Callable[[falcon.Request], None] | None = None,
        on_refused: Callable[[falcon.Request, Forbidden], None] | None = None,
    ):
        self.environment_keys = EnvironmentKeys(api_keys)
        self.key_lookup = key_lookup
        self.bearer_authenticator = bearer_authenticator
        # Opens the request's database connection before key_lookup reads (the database
        # middleware closes it with the request).
        self.open_connection = open_connection
        # Records a 403 the credential check itself answers (a person whose roles claim
        # maps to no role) in the audit chain.
        self.on_refused = on_refused

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = None
        req.context.actor = _actor(None, req.context.client_ip)
        if req.path in PUBLIC_PATHS or req.path == CONSOLE_PATH or req.path.startswith(CONSOLE_PATH + "/"):
            return
        try:
            principal = self.authenticate(req)
        except Forbidden as refusal:
            if self.on_refused is not None:
                self.on_refused(req, refusal)
            raise
        if principal is None:
            if req.path.startswith(WEBHOOK_PREFIX):
                return  # the webhook resource may accept a signed call (require_principal otherwise)
            raise Unauthorized(
                "API key missing or invalid: send it in the X-API-Key header (or a bearer token "
                "in Authorization, when an OpenID provider is configured)"
            )
        set_principal(req, principal)

    def authenticate(self, req: falcon.Request) -> Principal | None:
        """The principal of the request's credential; None when it carries none; 401 when
        the one it carries is not valid."""
        presented = req.get_header("X-API-Key")
        if presented is not None:
            principal = self.environment_keys.match(presented) if presented else None
            if principal is None and presented and self.key_lookup is not None:
                if self.open_connection is not None:
                    self.open_connection(req)
                principal = self.key_lookup(presented)
            if principal is None:
                raise Unauthorized("API key invalid, expired or revoked")
            return principal
        authorization = req.get_header("Authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization must be 'Bearer <token>'")
            if self.bearer_authenticator is None:
                raise Unauthorized("bearer tokens are not accepted: no OpenID provider is configured")
            return self.bearer_authenticator(token.strip())
        return None


def set_principal(req: falcon.Request, principal: Principal) -> None:
    """The request is ``principal``'s from here on: its scope applies and the audit entries
    name it (a webhook resource that accepted a signed call calls this)."""
    req.context.principal = principal
    req.context.actor = _actor(principal, req.context.client_ip)


def require_principal(req: falcon.Request) -> Principal:
    """The request's principal, or 401 (a webhook call that carried no credential)."""
    principal = getattr(req.context, "principal", None)
    if principal is None:
        raise Unauthorized("API key missing: send it in the X-API-Key header")
    return principal


class AuthorizationMiddleware:
    """403 ``FLK-0403`` when the principal may not call the operation; each one audited.

    ``operations`` maps (route template, METHOD) to the operation id; ``on_forbidden(req,
    principal, operation_id, reason)`` records the refusal (the audit entry).
    ``public_routes``: (route template, METHOD) pairs that are not API operations and need
    no credential (the web console's pages); every other responder must be in the table.
    """

    def __init__(
        self,
        operations: dict[tuple[str, str], str],
        on_forbidden=None,
        public_routes: frozenset[tuple[str, str]] = frozenset(),
    ):
        self.operations = operations
        self.on_forbidden = on_forbidden
        self.public_routes = public_routes

    def process_resource(self, req, resp, resource, params) -> None:
        if resource is None:
            return
        operation_id = self.operations.get((req.uri_template, req.method))
        if operation_id is None and (req.uri_template, req.method) in self.public_routes:
            return
        if operation_id is None:
            if hasattr(resource, "on_" + req.method.lower()):
                # A responder the table does not know: refused, not silently open.
                self._refuse(
                    req, req.context.principal, f"{req.method} {req.uri_template}", "it is not in the roles table"
                )
            return  # falcon answers 405
        req.context.operation_id = operation_id
        permission = OPERATION_PERMISSIONS[operation_id]
        if permission is Permission.PUBLIC:
            return
        principal: Principal | None = req.context.principal
        if principal is None:
            if permission is Permission.WEBHOOK:
                return  # the webhook resource authenticates the call or answers 401
            raise Unauthorized("API key missing: send it in the X-API-Key header")
        if not principal.may(permission):
            allowed = ", ".join(roles_for(operation_id))
            self._refuse(req, principal, operation_id, f"it needs one of the roles {allowed}")
        if principal.scoped and operation_id in UNSCOPED_ONLY:
            self._refuse(req, principal, operation_id, "a principal limited to named workflows may not call it")

    def _refuse(self, req, principal: Principal | None, operation_id: str, reason: str) -> None:
        if self.on_forbidden is not None and principal is not None:
            self.on_forbidden(req, principal, operation_id, reason)
        who = "this caller" if principal is None else f"{principal.name} ({_roles_text(principal)})"
        raise Forbidden(f"{who} may not call {operation_id}: {reason}")


def _roles_text(principal: Principal) -> str:
    roles = sorted(principal.roles, key=list(Role).index)
    return "role " + ", ".join(roles) if len(roles) == 1 else "roles " + ", ".join(roles)
