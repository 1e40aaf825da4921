"""The catalog lists page with ``limit`` and ``cursor`` like every other list."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/v1/catalog/auth-types", "/v1/catalog/action-types"])
def test_the_catalog_lists_accept_limit_and_cursor(client, path):
    everything = client.simulate_get(path)
    assert everything.status_code == 200, everything.json
    names = [item["name"] for item in everything.json["items"]]
    assert names == sorted(names) and len(names) >= 4 and everything.json["hasMore"] is False

    seen, cursor = [], None
    for _ in range(len(names)):  # bounded: one page per name at most
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get(path, params=params)
        assert page.status_code == 200, page.json
        assert len(page.json["items"]) <= 3
        seen.extend(item["name"] for item in page.json["items"])
        if not page.json["hasMore"]:
            assert page.json["nextCursor"] == ""
            break
        cursor = page.json["nextCursor"]
    assert seen == names


@pytest.mark.parametrize(
    "params, code",
    [
        ({"limit": "0"}, "FLK-0309"),
        ({"limit": "abc"}, "FLK-0309"),
        ({"cursor": "not-a-cursor"}, "FLK-0311"),
    ],
)
def test_the_catalog_lists_refuse_a_bad_limit_or_cursor(client, params, code):
    refused = client.simulate_get("/v1/catalog/auth-types", params=params)
    assert refused.status_code == 400
    assert refused.json["code"] == code
