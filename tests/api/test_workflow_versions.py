"""GET /v1/workflows/{id}/versions and .../versions/{version}: every saved version, newest
first, each one's spec; 404 for an unknown workflow or version, 400 for a bad number; a
key limited to another workflow gets the same 404 as for a missing one."""

from __future__ import annotations

import falcon.testing
import pytest

from api_helpers import create_workflow, workflow_body

MISSING = "00000000-0000-7000-8000-000000000000"


def stored_key(client, name: str, role: str, workflows=None) -> str:
    body = {"name": name, "role": role, **({"workflows": workflows} if workflows else {})}
    response = client.simulate_post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json["key"]


def two_node_body(name: str = "payments") -> dict:
    body = workflow_body(name=name)
    body["nodes"] = [
        body["nodes"][0],
        {**body["nodes"][2], "data": {"actionType": "set_output", "output": {"ok": True}}},
    ]
    body["edges"] = [{"source": "start", "target": "out"}]
    return body


@pytest.fixture
def versioned(client):
    """A draft saved twice: version 1 with three nodes, version 2 (current) with two."""
    workflow_id = create_workflow(client)
    replaced = client.simulate_put(f"/v1/workflows/{workflow_id}", json=two_node_body())
    assert replaced.status_code == 200, replaced.text
    assert replaced.json["version"] == 2
    return workflow_id


def test_lists_every_version_newest_first(client, versioned):
    response = client.simulate_get(f"/v1/workflows/{versioned}/versions")
    assert response.status_code == 200, response.text
    items = response.json["items"]
    assert [(item["version"], item["current"], item["nodeCount"]) for item in items] == [(2, True, 2), (1, False, 3)]
    assert items[0]["specHash"] != items[1]["specHash"]
    assert all(item["specHash"].startswith("sha256:") and item["createdAt"].endswith("Z") for item in items)
    assert response.json["hasMore"] is False

    first_page = client.simulate_get(f"/v1/workflows/{versioned}/versions", params={"limit": 1}).json
    assert [item["version"] for item in first_page["items"]] == [2] and first_page["hasMore"] is True
    second = client.simulate_get(
        f"/v1/workflows/{versioned}/versions", params={"limit": 1, "cursor": first_page["nextCursor"]}
    ).json
    assert [item["version"] for item in second["items"]] == [1] and second["hasMore"] is False
    ascending = client.simulate_get(f"/v1/workflows/{versioned}/versions", params={"sortOrder": "ASC"}).json
    assert [item["version"] for item in ascending["items"]] == [1, 2]


def test_gets_each_versions_spec(client, versioned):
    old = client.simulate_get(f"/v1/workflows/{versioned}/versions/1")
    new = client.simulate_get(f"/v1/workflows/{versioned}/versions/2")
    assert old.status_code == new.status_code == 200, old.text
    assert [node["id"] for node in old.json["nodes"]] == ["start", "score", "out"]
    assert [node["id"] for node in new.json["nodes"]] == ["start", "out"]
    assert (old.json["current"], new.json["current"]) == (False, True)
    assert old.json["workflowId"] == versioned and old.json["name"] == "payments"
    assert old.json["description"] == "score a payment"
    current = client.simulate_get(f"/v1/workflows/{versioned}").json
    assert (new.json["nodes"], new.json["edges"]) == (current["nodes"], current["edges"])
    listed = client.simulate_get(f"/v1/workflows/{versioned}/versions").json["items"]
    assert {item["version"]: item["specHash"] for item in listed} == {1: old.json["specHash"], 2: new.json["specHash"]}


def test_unknown_workflow_or_version_is_404_and_a_bad_number_400(client, versioned):
    for path in (f"/v1/workflows/{MISSING}/versions", f"/v1/workflows/{MISSING}/versions/1"):
        response = client.simulate_get(path)
        assert (response.status_code, response.json["code"]) == (404, "FLK-0100"), path
        assert set(response.json) >= {"code", "title", "message"}
    absent = client.simulate_get(f"/v1/workflows/{versioned}/versions/3")
    assert (absent.status_code, absent.json["code"], absent.json["title"]) == (404, "FLK-0109", "Not Found")
    for bad in ("0", "-1", "one", "1.5", "2147483648", "99999999999999999999", "%C2%B9"):
        response = client.simulate_get(f"/v1/workflows/{versioned}/versions/{bad}")
        assert (response.status_code, response.json["code"]) == (400, "FLK-0110"), bad
    malformed = client.simulate_get("/v1/workflows/not-a-uuid/versions")
    assert (malformed.status_code, malformed.json["code"]) == (400, "FLK-0002")


def test_a_key_scoped_to_another_workflow_gets_404_and_a_viewer_reads(app, client, versioned):
    other = create_workflow(client, workflow_body(name="refunds", path="/refunds"))
    scoped = falcon.testing.TestClient(
        app, headers={"X-API-Key": stored_key(client, "refunds-ci", "viewer", ["refunds"])}
    )
    for suffix in ("/versions", "/versions/1"):
        hidden = scoped.simulate_get(f"/v1/workflows/{versioned}{suffix}")
        missing = scoped.simulate_get(f"/v1/workflows/{MISSING}{suffix}")
        assert (
            (hidden.status_code, hidden.json["code"])
            == (missing.status_code, missing.json["code"])
            == (404, "FLK-0100")
        )
        assert scoped.simulate_get(f"/v1/workflows/{other}{suffix}").status_code == 200

    viewer = falcon.testing.TestClient(app, headers={"X-API-Key": stored_key(client, "reader", "viewer")})
    assert [item["version"] for item in viewer.simulate_get(f"/v1/workflows/{versioned}/versions").json["items"]] == [
        2,
        1,
    ]
    assert viewer.simulate_get(f"/v1/workflows/{versioned}/versions/1").status_code == 200


def test_without_a_key_the_versions_are_refused(anonymous, versioned):
    assert anonymous.simulate_get(f"/v1/workflows/{versioned}/versions").status_code == 401
    assert anonymous.simulate_get(f"/v1/workflows/{versioned}/versions/1").status_code == 401
