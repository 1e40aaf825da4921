"""Who a request comes from, and what that principal may do.

A :class:`Principal` is made by whoever checked the credential: the authentication
middleware for ``X-API-Key`` (keys from ``FLOWKER_API_KEYS`` or the database), the
bearer authenticator for a person's JWT, the webhook route for a signed call. The rest of
the server only asks it :meth:`Principal.may` and :meth:`Principal.sees_workflow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """DESIGN §13. Not a single ladder: ``auditor`` and ``operator`` each extend ``viewer``
    in a different direction, so checks go through :data:`ROLE_PERMISSIONS`, never ``<``."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    AUDITOR = "auditor"
    ADMIN = "admin"
    WEBHOOK = "webhook"


class Permission(StrEnum):
    """What an operation needs (flowker.access.routes maps every operation to one)."""

    PUBLIC = "public"  # the health probes: no credential at all
    READ = "read"  # workflows, executors, executions, catalog, dashboards, version, the API document
    RUN = "run"  # trigger executions (and retry)
    EDIT = "edit"  # create, change, delete workflows and executors; lifecycle; executor test
    AUDIT = "audit"  # audit events and verify
    ADMIN = "admin"  # API keys
    WEBHOOK = "webhook"  # the webhook routes
    METRICS = "metrics"  # GET /metrics: any authenticated principal (DESIGN §14)


# Each role's permissions; the supersets DESIGN §13 states are spelled out.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ, Permission.METRICS}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.RUN, Permission.WEBHOOK, Permission.METRICS}),
    Role.EDITOR: frozenset({Permission.READ, Permission.RUN, Permission.WEBHOOK, Permission.EDIT, Permission.METRICS}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT, Permission.METRICS}),
    Role.ADMIN: frozenset(set(Permission) - {Permission.PUBLIC}),
    Role.WEBHOOK: frozenset({Permission.WEBHOOK, Permission.METRICS}),
}
# Shown in tables and docs in this order.
ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.OPERATOR, Role.EDITOR, Role.AUDITOR, Role.ADMIN, Role.WEBHOOK)


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """The roles granted ``permission``, in :data:`ROLE_ORDER` (PUBLIC: every role)."""
    if permission is Permission.PUBLIC:
        return ROLE_ORDER
    return tuple(role for role in ROLE_ORDER if permission in ROLE_PERMISSIONS[role])


def parse_role(text: str) -> Role:
    """``text`` (exactly a role's name) as a Role; ValueError naming the valid ones otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"unknown role {text!r}: use one of {', '.join(ROLE_ORDER)}") from None


class PrincipalKind(StrEnum):
    """How the principal proved itself; also the audit actor type."""

    API_KEY = "api_key"
    PERSON = "person"
    WEBHOOK_SIGNATURE = "webhook_signature"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``name`` is the audit actor id and must identify the caller without being a secret:
    a key's name, ``<issuer> <sub>`` for a person, the workflow for a signed webhook.
    ``workflows``: the workflow names it is limited to (None: every workflow).
    ``extra_roles``: further roles (a person whose claim maps to several); the principal
    may do what any of its roles may.
    """

    kind: PrincipalKind
    name: str
    role: Role
    workflows: frozenset[str] | None = None
    extra_roles: frozenset[Role] = frozenset()

    @property
    def actor_type(self) -> str:
        return self.kind.value

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset({self.role, *self.extra_roles})

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        return frozenset(granted)

    def may(self, permission: Permission) -> bool:
        return permission is Permission.PUBLIC or permission in self.permissions

    @property
    def scoped(self) -> bool:
        return self.workflows is not None

    def sees_workflow(self, name: str) -> bool:
        """Whether the workflow named ``name`` is within this principal's scope."""
        return self.workflows is None or name in self.workflows
