"""Roles, principals and FLOWKER_API_KEYS entries with roles (name:key[:role])."""

from __future__ import annotations

import pytest

from flowker.access import Permission, Principal, PrincipalKind, Role, parse_role
from flowker.access.principal import ROLE_PERMISSIONS
from flowker.errors import ConfigurationError
from flowker.settings import Settings

LONG = "k" * 40


def keys_of(value: str, **extra):
    return Settings.from_mapping({"api_keys": value, **extra}).api_keys


def test_a_key_without_a_role_is_admin_and_a_role_suffix_is_read():
    keys = keys_of(f"ci:{LONG}:operator,ops:{LONG}x,{LONG}y,audit:{LONG}z:AUDITOR")
    assert [(key.name, key.role) for key in keys] == [
        ("ci", Role.OPERATOR),
        ("ops", Role.ADMIN),
        (keys[2].name, Role.ADMIN),
        ("audit", Role.AUDITOR),
    ]
    assert keys[0].key == LONG and keys[3].key == LONG + "z"
    assert keys[2].name.startswith("key-")  # unnamed: a fingerprint, never the key


def test_a_key_holding_colons_keeps_them_unless_the_last_part_is_a_role():
    (key,) = keys_of("ci:abc:def:ghi")
    assert (key.key, key.role) == ("abc:def:ghi", Role.ADMIN)
    (key,) = keys_of("ci:abc:def:viewer")
    assert (key.key, key.role) == ("abc:def", Role.VIEWER)


def test_production_still_refuses_short_keys_whatever_their_role():
    production = {"env": "production", "secret_key": "0X1AhXLHhy4-ODGdvyI_-Uu7T_V2kJVxNDW3hSKIT2A="}
    with pytest.raises(ConfigurationError, match="shorter than 32") as refused:
        keys_of("ci:short-key:viewer", **production)
    assert "short-key" not in str(refused.value)
    (key,) = keys_of(f"ci:{LONG}:viewer", **production)
    assert key.role is Role.VIEWER
    with pytest.raises(ConfigurationError, match="empty key"):
        keys_of("ci::viewer")


def test_roles_grant_what_the_design_says():
    assert ROLE_PERMISSIONS[Role.OPERATOR] > ROLE_PERMISSIONS[Role.VIEWER]
    assert ROLE_PERMISSIONS[Role.EDITOR] > ROLE_PERMISSIONS[Role.OPERATOR]
    assert ROLE_PERMISSIONS[Role.AUDITOR] > ROLE_PERMISSIONS[Role.VIEWER]
    assert Permission.AUDIT not in ROLE_PERMISSIONS[Role.EDITOR]
    assert Permission.RUN not in ROLE_PERMISSIONS[Role.AUDITOR]
    assert all(ROLE_PERMISSIONS[Role.ADMIN] >= granted for granted in ROLE_PERMISSIONS.values())
    # GET /metrics is for any authenticated principal (DESIGN §14), webhook keys included.
    assert ROLE_PERMISSIONS[Role.WEBHOOK] == {Permission.WEBHOOK, Permission.METRICS}
    assert all(Permission.METRICS in granted for granted in ROLE_PERMISSIONS.values())
    assert parse_role("editor") is Role.EDITOR
    for wrong in ("root", " editor", "Editor", "editor\n"):
        with pytest.raises(ValueError, match="unknown role .*: use one of viewer, operator"):
            parse_role(wrong)


def test_a_principal_with_several_roles_may_do_what_any_of_them_may():
    person = Principal(
        PrincipalKind.PERSON, "https://id.example alice", Role.OPERATOR, extra_roles=frozenset({Role.AUDITOR})
    )
    assert person.may(Permission.RUN) and person.may(Permission.AUDIT) and not person.may(Permission.EDIT)
    assert person.actor_type == "person" and person.sees_workflow("anything") and not person.scoped
    scoped = Principal(PrincipalKind.API_KEY, "ci", Role.VIEWER, frozenset({"payments"}))
    assert scoped.scoped and scoped.sees_workflow("payments") and not scoped.sees_workflow("refunds")
    assert scoped.may(Permission.PUBLIC) and not scoped.may(Permission.RUN)
