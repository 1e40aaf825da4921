"""A key revoked through one server is refused by another server process on the same
database at its very next request (no cache of accepted keys), on SQLite and PostgreSQL;
and so is a key revoked with ``flowker keys revoke`` while both run."""

from __future__ import annotations

import requests

from e2e_helpers import API_KEY, flowker_env, run_flowker


def test_a_key_revoked_on_one_server_is_refused_by_the_other_at_once(start_server, database_url):
    first = start_server(workers=1, threads=2)
    second = start_server(workers=1, threads=2)
    admin = {"X-API-Key": API_KEY}
    made = requests.post(f"{first.url}/v1/api-keys", json={"name": "ci", "role": "operator"}, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    for server in (first, second, second):
        assert requests.get(f"{server.url}/v1/workflows", headers=key, timeout=10).status_code == 200

    assert requests.delete(f"{first.url}/v1/api-keys/ci", headers=admin, timeout=10).status_code == 204
    refused = requests.get(f"{second.url}/v1/workflows", headers=key, timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == "FLK-0401"
    assert requests.get(f"{first.url}/v1/workflows", headers=key, timeout=10).status_code == 401

    # Revoked from the command line, with both servers running.
    other = requests.post(
        f"{second.url}/v1/api-keys", json={"name": "ops", "role": "viewer"}, headers=admin, timeout=10
    )
    other_key = {"X-API-Key": other.json()["key"]}
    assert requests.get(f"{first.url}/v1/executions", headers=other_key, timeout=10).status_code == 200
    revoked = run_flowker(["keys", "revoke", "ops"], flowker_env(database_url))
    assert revoked.returncode == 0, revoked.stderr
    for server in (first, second):
        assert requests.get(f"{server.url}/v1/executions", headers=other_key, timeout=10).status_code == 401
