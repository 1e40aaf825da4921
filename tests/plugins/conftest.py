"""Throwaway plugin distributions: a module plus a ``.dist-info`` with entry points.

``fake_site.add(...)`` writes one distribution into a folder put on ``sys.path``, so
``importlib.metadata`` discovers it exactly as it discovers a pip-installed package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The plugin author kit's fixtures (what `pytest_plugins = ["flowker.testing"]` gives an author).
from flowker.testing import auth_context, local_server, registered_secrets  # noqa: F401

PLUGIN_TEMPLATE = """
from requests.auth import AuthBase

from flowker import hookimpl
from flowker.auth.base import AuthType


class _Auth(AuthBase):
    def __call__(self, request):
        request.headers["X-Fake"] = "{type_name}"
        return request


class FakeAuth(AuthType):
    name = "{type_name}"
    description = "A fake auth type from {dist_name}."
    config_schema = {{"type": "object", "additionalProperties": False, "properties": {{}}}}

    def build(self, config, context):
        return _Auth()


@hookimpl
def flowker_register_auth_types(registry):
    for type_name in {type_names!r}:
        auth = FakeAuth()
        auth.name = type_name
        registry.register_auth_type(auth)
"""


@dataclass
class FakeSite:
    root: Path
    modules: list = field(default_factory=list)

    def add(
        self,
        dist_name: str,
        type_names=("fake",),
        *,
        entry_name: str | None = None,
        source: str | None = None,
        version: str = "1.2.3",
    ) -> str:
        """Write a distribution; returns its (unique) module name."""
        module = "fake_plugin_" + uuid.uuid4().hex[:10]
        if source is None:
            source = PLUGIN_TEMPLATE.format(
                type_name=type_names[0] if type_names else "none", type_names=tuple(type_names), dist_name=dist_name
            )
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[flowker]\n{entry_name or dist_name} = {module}\n")
        self.modules.append(module)
        importlib.invalidate_caches()
        return module

    def entry_points(self):
        """The flowker entry points of these distributions only."""
        found = []
        for dist in importlib.metadata.distributions(path=[str(self.root)]):
            found.extend(ep for ep in dist.entry_points if ep.group == "flowker")
        return found


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    site = FakeSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)
