"""Plugin loading through pluggy's hook: type names, clashes, replacing one built-in,
hook ordering and wrappers, and the ``flowker[testing]`` extra."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from flowker.errors import PluginError
from flowker.plugins import load_registry
from flowker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad_name", ["HmacSign", "hmac-sign", "9lives", "with space"])
def test_a_type_name_that_is_not_snake_case_is_refused_at_load_naming_the_package(fake_site, bad_name):
    fake_site.add("flowker-auth-camel", (bad_name,), entry_name="camel")
    fake_site.add("flowker-auth-good", ("good",), entry_name="good")
    registry = load_registry(Settings(), entry_points=fake_site.entry_points())
    assert bad_name not in registry.auth_types and "good" in registry.auth_types
    [(distribution, message)] = registry.load_errors
    assert distribution == "flowker-auth-camel"
    assert message.startswith(f"flowker-auth-camel registered auth type {bad_name!r}: a type name must be snake_case")
    assert "camel" not in {plugin.name for plugin in registry.plugins}


def test_a_clash_with_a_built_in_points_at_flowker_disabled_plugins(fake_site):
    fake_site.add("flowker-auth-evil", ("bearer",), entry_name="evil")
    with pytest.raises(PluginError) as caught:
        load_registry(Settings(), entry_points=fake_site.entry_points())
    assert caught.value.message == (
        "auth type 'bearer' is registered twice: by flowker and by flowker-auth-evil; to keep one, list the "
        "other's plugin in FLOWKER_DISABLED_PLUGINS: 'bearer' (flowker) or 'evil' (flowker-auth-evil)"
    )


def test_disabling_one_built_in_leaves_the_others_and_lets_a_package_replace_it(fake_site):
    fake_site.add("flowker-auth-mybearer", ("bearer",), entry_name="mybearer")
    registry = load_registry(
        Settings.from_mapping({"disabled_plugins": "bearer"}), entry_points=fake_site.entry_points()
    )
    assert registry.provider_of("auth", "bearer") == "flowker-auth-mybearer"
    assert {"none", "api_key", "basic", "oidc_client_credentials", "oidc_user"} <= set(registry.auth_types)
    assert {registry.provider_of("auth", name) for name in ("none", "api_key", "basic")} == {"flowker"}
    assert registry.disabled_plugins == [("bearer", "flowker")]
    assert registry.load_errors == []


def test_disabling_a_built_in_module_still_disables_each_of_its_types():
    registry = load_registry(Settings.from_mapping({"disabled_plugins": "flowker.auth.builtin"}), entry_points=[])
    assert not {"none", "api_key", "bearer", "basic"} & set(registry.auth_types)
    assert "oidc_user" in registry.auth_types
    assert registry.disabled_plugins == [("flowker.auth.builtin", "flowker")]


ORDERING_PLUGIN = """
from flowker import hookimpl
from flowker.auth.builtin import NoneAuth

SEEN = []


class Early(NoneAuth):
    name = "early"


@hookimpl(tryfirst=True)
def flowker_register_auth_types(registry):
    SEEN.append(("tryfirst", sorted(registry.auth_types)))
    registry.register_auth_type(Early())


class Wrapper:
    @hookimpl(hookwrapper=True)
    def flowker_register_auth_types(self, registry):
        SEEN.append(("before", sorted(registry.auth_types)))
        yield
        SEEN.append(("after", sorted(registry.auth_types)))


def plugin_with_wrapper():
    return Wrapper()
"""


def test_tryfirst_wrappers_and_call_monitoring_apply_to_the_registration_hook(fake_site):
    from flowker.plugins import collect_registry, create_plugin_manager

    module_name = fake_site.add("flowker-auth-ordering", source=ORDERING_PLUGIN, entry_name="ordering")
    entry_points = fake_site.entry_points()
    manager, loaded = create_plugin_manager((), entry_points)
    module = sys.modules[module_name]
    manager.register(module.plugin_with_wrapper(), name="wrapper")
    monitored = []
    manager.add_hookcall_monitoring(
        lambda name, impls, kwargs: monitored.append(name), lambda outcome, name, impls, kwargs: None
    )
    registry = collect_registry(manager, loaded)

    assert [step for step, _ in module.SEEN] == ["before", "tryfirst", "after"]
    assert module.SEEN[1][1] == []  # tryfirst: ran before every built-in
    assert {"early", "bearer", "oidc_user"} <= set(module.SEEN[2][1])
    assert registry.provider_of("auth", "early") == "flowker-auth-ordering"
    assert monitored == ["flowker_register_auth_types", "flowker_register_action_types"]


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_testing_extra_brings_everything_flowker_testing_imports():
    """``pip install flowker[testing]`` is enough for ``import flowker.testing``: every
    third-party module it imports comes from install_requires or the testing extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    assert "testing" in extras, "pyproject.toml has no testing extra"
    available = _requirement_names("\n".join(project["dependencies"])) | _requirement_names(
        "\n".join(extras["testing"])
    )
    code = "import sys, flowker.testing\nprint('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    by_module = importlib.metadata.packages_distributions()
    needed = {
        dist.lower().replace("_", "-")
        for module in result.stdout.split()
        for dist in by_module.get(module, ())
        if dist.lower() != "flowker"
    }
    missing = {dist for dist in needed if dist not in available}
    # Dependencies of the listed requirements come along with them.
    transitive = set()
    for name in available:
        try:
            transitive |= _requirement_names("\n".join(importlib.metadata.requires(name) or ()))
        except importlib.metadata.PackageNotFoundError:
            pass
    assert missing - transitive == set(), (
        f"flowker.testing imports {sorted(missing - transitive)} not in pyproject.toml"
    )
    assert "pytest" in _requirement_names("\n".join(extras["testing"]))
