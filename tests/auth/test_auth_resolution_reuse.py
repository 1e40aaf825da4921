"""AuthResolution.credentials: the built auth is reused exactly while the resolved values
stay the same (type for type), and rebuilt as soon as any of them changes."""

from __future__ import annotations

from typing import Any

from flowker.auth.base import AuthContext, AuthType
from flowker.auth.resolution import AuthResolution
from flowker.security.redaction import Redactor


class CountingType(AuthType):
    name = "counting"
    config_schema = {"type": "object"}

    def __init__(self) -> None:
        self.builds: list[dict] = []

    def build(self, config: Any, context: AuthContext) -> Any:
        self.builds.append(config)
        config["seen"] = len(self.builds)  # a build that keeps and changes its config
        return object()


def _resolution() -> AuthResolution:
    return AuthResolution(settings=None, registry=None, redactor=Redactor(), secret_box=lambda: None)


def _context() -> AuthContext:
    return AuthContext()


def test_the_same_values_reuse_the_built_auth():
    resolution, kind = _resolution(), CountingType()
    first = resolution.credentials(kind, {"token": "abcd-1234", "scopes": ["a", "b"]}, _context)
    again = resolution.credentials(kind, {"token": "abcd-1234", "scopes": ["a", "b"]}, _context, reuse=first)
    assert again is first and len(kind.builds) == 1


def test_a_changed_value_or_type_builds_anew():
    resolution, kind = _resolution(), CountingType()
    built = resolution.credentials(kind, {"token": "abcd-1234", "n": 1}, _context)
    for changed in ({"token": "rotated-5678", "n": 1}, {"token": "rotated-5678", "n": True}, {"token": "rotated-5678"}):
        rebuilt = resolution.credentials(kind, dict(changed), _context, reuse=built)
        assert rebuilt is not built and rebuilt.fingerprint != built.fingerprint
        built = rebuilt
    assert len(kind.builds) == 4


def test_a_build_that_changes_its_config_does_not_change_what_is_compared():
    resolution, kind = _resolution(), CountingType()
    first = resolution.credentials(kind, {"token": "abcd-1234"}, _context)
    assert kind.builds[0] == {"token": "abcd-1234", "seen": 1}  # the build changed its copy
    assert first.resolved == {"token": "abcd-1234"}  # what reuse compares with did not change
    again = resolution.credentials(kind, {"token": "abcd-1234"}, _context, reuse=first)
    assert again is first and len(kind.builds) == 1
