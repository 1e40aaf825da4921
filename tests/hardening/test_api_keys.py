"""API key rotation: several keys at once, the audit actor a name or fingerprint (never the
key), a removed key refused after a restart, and every key compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

import falcon.testing
import pytest

from flowker.settings import Settings

from hardening_helpers import find_leaks

OLD_KEY = "old-key-7f3a9c2e41d8b6a05e9f"
NEW_KEY = "new-key-2b8e6d1f93c47a0e5d1c"
UNNAMED_KEY = "unnamed-key-c4d9e2a7f1b3860d"


def fingerprint(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def create_executor(client, name: str) -> str:
    response = client.simulate_post(
        "/v1/executors",
        json={
            "name": name,
            "baseUrl": "https://ledger.example.com",
            "endpoints": [{"name": "book", "path": "/book", "method": "POST"}],
            "authentication": {"type": "none"},
        },
    )
    assert response.status_code == 201, response.text
    return response.json["id"]


def actor_of(client, resource_id: str) -> dict:
    items = client.simulate_get("/v1/audit-events", params={"resourceId": resource_id}).json["items"]
    assert items, resource_id
    return items[0]["actor"]


def test_old_and_new_keys_work_during_rotation_and_a_removed_key_is_refused_after_restart(make_app, database_url):
    keys = f"deploy-2025:{OLD_KEY},deploy-2026:{NEW_KEY},{UNNAMED_KEY}"
    during = make_app(api_keys=keys)
    actors = {}
    for key in (OLD_KEY, NEW_KEY, UNNAMED_KEY):
        client = falcon.testing.TestClient(during, headers={"X-API-Key": key})
        executor_id = create_executor(client, f"ledger-{key[:3]}")
        actors[key] = actor_of(client, executor_id)
    assert actors[OLD_KEY] == {**actors[OLD_KEY], "type": "api_key", "id": "deploy-2025"}
    assert actors[NEW_KEY]["id"] == "deploy-2026"
    assert actors[UNNAMED_KEY]["id"] == fingerprint(UNNAMED_KEY)

    # The restart after rotation: the old key is gone from FLOWKER_API_KEYS.
    after = make_app(api_keys=f"deploy-2026:{NEW_KEY}")
    refused = falcon.testing.TestClient(after, headers={"X-API-Key": OLD_KEY}).simulate_get("/v1/executors")
    assert refused.status_code == 401 and refused.json["code"] == "FLK-0401"
    for key in (OLD_KEY, UNNAMED_KEY):
        assert (
            falcon.testing.TestClient(after, headers={"X-API-Key": key}).simulate_get("/v1/workflows").status_code
            == 401
        )
    current = falcon.testing.TestClient(after, headers={"X-API-Key": NEW_KEY})
    assert current.simulate_get("/v1/executors").status_code == 200
    # The history keeps the names the old keys had; no key appears in any entry.
    entries = current.simulate_get("/v1/audit-events", params={"limit": 100}).json["items"]
    assert {entry["actor"]["id"] for entry in entries} >= {"deploy-2025", "deploy-2026", fingerprint(UNNAMED_KEY)}
    needles = [(key, "raw", key) for key in (OLD_KEY, NEW_KEY, UNNAMED_KEY)]
    assert not find_leaks(needles, {"audit entries": str(entries), "refusal": refused.text})


def test_keys_never_show_in_audit_rows_or_database_files(sqlite_apps, tmp_path):
    app = sqlite_apps(api_keys=f"ops:{OLD_KEY},{UNNAMED_KEY}")
    for key in (OLD_KEY, UNNAMED_KEY):
        create_executor(falcon.testing.TestClient(app, headers={"X-API-Key": key}), f"x-{key[:4]}")
    falcon.testing.TestClient(app, headers={"X-API-Key": OLD_KEY + "-wrong"}).simulate_get("/v1/executors")
    files = {path.name: path.read_bytes() for path in tmp_path.glob("hardening.db*")}
    assert files
    needles = [(key, "raw", key) for key in (OLD_KEY, UNNAMED_KEY)]
    assert not find_leaks(needles, files)


def test_every_configured_key_is_compared_in_constant_time(sqlite_apps, monkeypatch):
    """hmac.compare_digest against every configured key, whether one matches or not, and
    on digests, so neither the position of the matching key nor the keys' lengths show."""
    from flowker.api import authentication as middleware

    keys = ",".join(f"k{i}:key-number-{i}-{'x' * i}" for i in range(5))
    app = sqlite_apps(api_keys=keys)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", counting)
    for presented, expected_status in (
        ("key-number-0-", 200),
        ("key-number-4-xxxx", 200),
        ("nope", 401),
        ("key-number-2-x", 401),
    ):
        calls.clear()
        response = falcon.testing.TestClient(app, headers={"X-API-Key": presented}).simulate_get("/v1/workflows")
        assert response.status_code == expected_status, presented
        assert len(calls) == 5, (presented, len(calls))
        # Fixed-length digests are compared, never the raw (variable-length) keys.
        assert all(len(a) == len(b) == 32 for a, b in calls)
        assert all(presented.encode() not in (a, b) for a, b in calls)


def test_a_missing_or_empty_key_is_not_compared_and_is_refused(sqlite_apps, monkeypatch):
    from flowker.api import authentication as middleware

    app = sqlite_apps()
    calls = []
    monkeypatch.setattr(middleware.hmac, "compare_digest", lambda a, b: calls.append(1) or False)
    for headers in ({}, {"X-API-Key": ""}):
        response = falcon.testing.TestClient(app, headers=headers).simulate_get("/v1/workflows")
        assert response.status_code == 401 and response.json["code"] == "FLK-0401"
    assert calls == []


@pytest.mark.parametrize(
    "value,names",
    [
        (f"ops:{OLD_KEY}", ["ops"]),
        (f" ops : {OLD_KEY} , {UNNAMED_KEY} ", ["ops", fingerprint(UNNAMED_KEY)]),
        (f"{OLD_KEY},{NEW_KEY}", [fingerprint(OLD_KEY), fingerprint(NEW_KEY)]),
    ],
)
def test_key_names_and_fingerprints_from_the_setting(value, names):
    settings = Settings.from_mapping({"api_keys": value})
    assert [key.name for key in settings.api_keys] == names
    assert all(key.key.strip() == key.key for key in settings.api_keys)
    # The key never shows in the settings' repr (logged at start-up by some deployments).
    for key in settings.api_keys:
        assert key.key not in repr(settings)


def test_an_unnamed_key_fingerprint_does_not_reveal_the_key():
    name = Settings.from_mapping({"api_keys": UNNAMED_KEY}).api_keys[0].name
    assert name == fingerprint(UNNAMED_KEY) and UNNAMED_KEY not in name and len(name) == 16


def test_two_keys_with_one_name_are_refused_at_start():
    """The audit actor is the key's name, so names must tell keys apart."""
    import pytest as _pytest

    from flowker.errors import ConfigurationError
    from flowker.settings import Settings

    with _pytest.raises(ConfigurationError, match="names ci more than once"):
        Settings.load(environ={"FLOWKER_API_KEYS": "ci:first-key-value,ci:second-key-value"})
    assert len(Settings.load(environ={"FLOWKER_API_KEYS": "ci:first,deploy:second"}).api_keys) == 2


def test_production_refuses_keys_shorter_than_32_characters_by_name():
    from flowker.errors import ConfigurationError

    base = {"FLOWKER_ENV": "production", "FLOWKER_SECRET_KEY": "q0cBSlwPOlVEa5hDxZ1qQ2hgXnlo0mX3M8GgR5S6qzU="}
    for keys, named in (("ops:x", "ops"), (f"ops:{'a' * 31},ci:{'b' * 40}", "ops"), ("y" * 20, "key-")):
        with pytest.raises(ConfigurationError) as refused:
            Settings.load(environ={**base, "FLOWKER_API_KEYS": keys})
        message = str(refused.value)
        assert named in message and "32 characters" in message and refused.value.exit_code == 2
        for key in keys.split(","):
            assert key.partition(":")[2 if ":" in key else 0] not in message
    assert len(Settings.load(environ={**base, "FLOWKER_API_KEYS": f"ops:{'a' * 32}"}).api_keys) == 1
    # Development takes any length (a local toy server).
    assert Settings.load(environ={"FLOWKER_API_KEYS": "dev:x"}).api_keys[0].name == "dev"
