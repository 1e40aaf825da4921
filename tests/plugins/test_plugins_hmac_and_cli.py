"""The pip-installed flowker-auth-hmac plugin, and ``flowker plugins``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner

from flowker.cli import cli
from flowker.local_server import LocalHTTPServer
from flowker.plugins import load_registry
from flowker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HMAC_PLUGIN = ROOT / "plugins" / "flowker-auth-hmac"
FLOWKER = Path(sys.executable).with_name("flowker")


def test_the_hmac_plugin_is_installed_and_discovered_through_its_entry_point():
    dist = importlib.metadata.distribution("flowker-auth-hmac")
    assert [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "flowker"] == [("hmac", "flowker_auth_hmac")]
    registry = load_registry(Settings())
    assert registry.provider_of("auth", "hmac") == "flowker-auth-hmac"
    plugin = next(p for p in registry.plugins if p.name == "hmac")
    assert (plugin.distribution, plugin.version, plugin.auth_types) == ("flowker-auth-hmac", dist.version, ("hmac",))


def test_the_discovered_hmac_type_signs_requests_a_server_verifies():
    from flowker_auth_hmac import verify_signature

    secret = "registry-loaded-hmac-secret-0123"

    def handler(request):
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        ok = verify_signature(
            secret.encode(),
            request.method,
            path,
            request.header("X-Timestamp", ""),
            request.body,
            request.header("X-Signature", ""),
        )
        return (200, {}, {}) if ok else (401, {}, {})

    auth_type = load_registry(Settings()).auth_type("hmac")
    auth = auth_type.build({"key_id": "k1", "secret": secret}, None)
    with LocalHTTPServer(handler) as server, requests.Session() as session:
        session.trust_env = False
        assert session.post(server.url + "/orders?x=1", json={"id": 7}, auth=auth, timeout=10).status_code == 200
        assert (
            session.post(
                server.url + "/orders?x=1",
                json={"id": 7},
                auth=auth_type.build({"key_id": "k1", "secret": "x" * 32}, None),
                timeout=10,
            ).status_code
            == 401
        )


def test_the_hmac_plugins_own_test_suite_passes():
    """The plugin's tests (written with flowker.testing) run as its author would run them."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HMAC_PLUGIN / "tests")]
    result = subprocess.run(command, cwd=HMAC_PLUGIN, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_flowker_plugins_lists_packages_versions_and_types():
    result = CliRunner().invoke(cli, ["plugins"], env={"FLOWKER_DISABLED_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["PLUGIN", "PACKAGE", "VERSION", "AUTH", "TYPES", "ACTION", "TYPES"]
    hmac_line = next(line for line in lines if line.startswith("hmac "))
    assert hmac_line.split()[:4] == [
        "hmac",
        "flowker-auth-hmac",
        importlib.metadata.version("flowker-auth-hmac"),
        "hmac",
    ]
    # Each built-in auth type is its own plugin, named after the type.
    oidc_line = next(line for line in lines if line.startswith("oidc_user "))
    assert oidc_line.split()[:2] == ["oidc_user", "flowker"] and oidc_line.split()[3] == "oidc_user"


def test_flowker_plugins_json_with_a_disabled_plugin():
    result = CliRunner().invoke(cli, ["plugins", "--json"], env={"FLOWKER_DISABLED_PLUGINS": "hmac"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "hmac" not in [plugin["name"] for plugin in data["plugins"]]
    assert data["disabled"] == [{"name": "hmac", "distribution": "flowker-auth-hmac"}]
    builtin = next(p for p in data["plugins"] if p["name"] == "bearer")
    assert builtin == {
        "name": "bearer",
        "distribution": "flowker",
        "version": builtin["version"],
        "authTypes": ["bearer"],
        "actionTypes": [],
    }
    assert data["loadErrors"] == []


def test_flowker_plugins_in_a_fresh_process_reports_load_errors_and_clashes(fake_site):
    fake_site.add("flowker-auth-broken", source="raise ImportError('needs libfoo')\n", entry_name="broken")
    env = {**os.environ, "PYTHONPATH": str(fake_site.root), "FLOWKER_DISABLED_PLUGINS": ""}
    result = subprocess.run([str(FLOWKER), "plugins", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1  # a plugin failed to load
    data = json.loads(result.stdout)
    assert data["loadErrors"][0]["distribution"] == "flowker-auth-broken"
    assert "needs libfoo" in data["loadErrors"][0]["message"]
    assert "hmac" in [plugin["name"] for plugin in data["plugins"]]  # the rest loaded

    fake_site.add("flowker-auth-copycat", ("hmac",), entry_name="copycat")
    result = subprocess.run([str(FLOWKER), "plugins"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "'hmac'" in result.stderr
    assert "flowker-auth-hmac" in result.stderr and "flowker-auth-copycat" in result.stderr
