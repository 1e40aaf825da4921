"""The plugin manager: entry-point discovery, disabling, load errors and clashes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowker.errors import PluginError
from flowker.plugins import BUILTIN_PLUGINS, load_registry
from flowker.settings import Settings

BUILTIN_AUTH_TYPES = {"none", "api_key", "bearer", "basic", "oidc_client_credentials", "oidc_user"}


def test_the_six_built_in_auth_types_are_registered_as_plugins_of_flowker():
    registry = load_registry(Settings(), entry_points=[])
    assert set(registry.auth_types) == BUILTIN_AUTH_TYPES
    assert {registry.provider_of("auth", name) for name in BUILTIN_AUTH_TYPES} == {"flowker"}
    by_name = {plugin.name: plugin for plugin in registry.plugins}
    assert set(by_name) == set(BUILTIN_PLUGINS)
    # One plugin per built-in auth type, named after it (FLOWKER_DISABLED_PLUGINS=bearer disables just that one).
    assert {name: by_name[name].auth_types for name in BUILTIN_AUTH_TYPES} == {
        name: (name,) for name in BUILTIN_AUTH_TYPES
    }
    assert {"set_output", "transform", "log", "fail"} <= set(by_name["flowker.actions"].action_types)
    assert registry.load_errors == []


def test_hookimpl_is_importable_from_flowker_and_importing_flowker_loads_no_plugin():
    code = (
        "import sys, flowker\n"
        "from flowker import hookimpl\n"
        "import flowker.plugins\n"
        "assert hookimpl.project_name == 'flowker'\n"
        "loaded = [m for m in ('flowker.auth.oidc', 'flowker.auth.builtin', 'flowker_auth_hmac', 'requests_oauthlib')"
        " if m in sys.modules]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_installed_distribution_is_discovered_through_its_entry_point(fake_site):
    fake_site.add("flowker-auth-acme", ("acme",), entry_name="acme")
    registry = load_registry(Settings())  # real discovery: importlib.metadata over sys.path
    assert registry.provider_of("auth", "acme") == "flowker-auth-acme"
    plugin = next(p for p in registry.plugins if p.name == "acme")
    assert (plugin.distribution, plugin.version, plugin.auth_types) == ("flowker-auth-acme", "1.2.3", ("acme",))


@pytest.mark.parametrize("disabled", ["acme", "flowker-auth-acme", "flowker_auth_acme"])
def test_a_disabled_plugin_is_not_loaded_at_all(fake_site, disabled):
    module = fake_site.add("flowker-auth-acme", ("acme",), entry_name="acme")
    registry = load_registry(Settings(disabled_plugins=(disabled,)), entry_points=fake_site.entry_points())
    assert "acme" not in registry.auth_types
    assert module not in sys.modules  # never imported
    assert registry.disabled_plugins == [("acme", "flowker-auth-acme")]
    assert BUILTIN_AUTH_TYPES <= set(registry.auth_types)


def test_disabling_a_built_in_plugin_removes_its_types(fake_site):
    registry = load_registry(Settings.from_mapping({"disabled_plugins": "flowker.auth.oidc"}), entry_points=[])
    assert "oidc_user" not in registry.auth_types and "bearer" in registry.auth_types
    assert ("flowker.auth.oidc", "flowker") in registry.disabled_plugins


def test_a_plugin_that_fails_to_import_is_reported_with_its_distribution_and_the_rest_load(fake_site):
    fake_site.add("flowker-auth-broken", source="import a_module_that_does_not_exist\n", entry_name="broken")
    fake_site.add("flowker-auth-good", ("good",), entry_name="good")
    registry = load_registry(Settings(), entry_points=fake_site.entry_points())
    assert "good" in registry.auth_types and BUILTIN_AUTH_TYPES <= set(registry.auth_types)
    [(distribution, message)] = registry.load_errors
    assert distribution == "flowker-auth-broken"
    assert "flowker-auth-broken" in message and "ModuleNotFoundError" in message
    assert "broken" not in {plugin.name for plugin in registry.plugins}


def test_a_plugin_whose_hook_raises_is_reported_and_leaves_nothing_half_registered(fake_site):
    source = """
from flowker import hookimpl
from flowker.auth.builtin import BearerAuth

class Half(BearerAuth):
    name = "half"

@hookimpl
def flowker_register_auth_types(registry):
    registry.register_auth_type(Half())
    raise RuntimeError("boom")
"""
    fake_site.add("flowker-auth-half", source=source, entry_name="half")
    registry = load_registry(Settings(), entry_points=fake_site.entry_points())
    assert "half" not in registry.auth_types
    assert registry.load_errors == [
        (
            "flowker-auth-half",
            "plugin 'half' from flowker-auth-half failed in flowker_register_auth_types: RuntimeError: boom",
        )
    ]


def test_two_distributions_registering_the_same_type_name_fail_naming_both(fake_site):
    fake_site.add("flowker-auth-alpha", ("shared",), entry_name="alpha")
    fake_site.add("flowker-auth-beta", ("shared",), entry_name="beta")
    with pytest.raises(PluginError) as caught:
        load_registry(Settings(), entry_points=fake_site.entry_points())
    message = caught.value.message
    assert "'shared'" in message and "flowker-auth-alpha" in message and "flowker-auth-beta" in message
    assert caught.value.exit_code == 2


def test_a_third_party_type_reusing_a_built_in_name_fails_naming_flowker_and_the_package(fake_site):
    fake_site.add("flowker-auth-evil", ("bearer",), entry_name="evil")
    with pytest.raises(PluginError) as caught:
        load_registry(Settings(), entry_points=fake_site.entry_points())
    assert caught.value.message.startswith(
        "auth type 'bearer' is registered twice: by flowker and by flowker-auth-evil"
    )


def test_two_distributions_using_the_same_plugin_name_fail_naming_both(fake_site):
    fake_site.add("flowker-auth-one", ("one",), entry_name="same")
    fake_site.add("flowker-auth-two", ("two",), entry_name="same")
    with pytest.raises(PluginError) as caught:
        load_registry(Settings(), entry_points=fake_site.entry_points())
    assert "flowker-auth-one" in caught.value.message and "flowker-auth-two" in caught.value.message


def test_a_type_without_a_name_is_refused():
    from flowker.registry import Registry

    registry = Registry(current_distribution="flowker-auth-nameless")
    with pytest.raises(PluginError, match="flowker-auth-nameless registered an auth type without a name"):
        registry.register_auth_type(object())
