"""Two apps (two Runtimes) on two databases in one process: every request reads and
writes the database of the app it reached, and audits to that app's chain."""

from __future__ import annotations

import falcon.testing

from api_helpers import API_KEY, create_executor, create_workflow, make_settings


def _app(url: str, registry):
    from flowker.api.app import create_app
    from flowker.runtime import Runtime
    from flowker.storage.migrations import upgrade

    runtime = Runtime.from_settings(make_settings(url), registry=registry)
    upgrade(runtime.database)
    return create_app(runtime.settings, runtime=runtime)


def test_two_apps_in_one_process_keep_to_their_own_databases(database_url, tmp_path, registry, stub):
    apps = [_app(database_url, registry), _app(f"sqlite:///{tmp_path}/second.db", registry)]
    try:
        clients = [falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY}) for app in apps]
        workflows = []
        for client in clients:
            create_executor(client, stub.url)
            workflows.append(create_workflow(client, activate=True))
        executions: list[list[str]] = [[], []]
        for _ in range(3):  # interleaved: first, second, first, second...
            for index, client in enumerate(clients):
                response = client.simulate_post(
                    f"/v1/workflows/{workflows[index]}/executions", json={"inputData": {"amount": 5}}
                )
                assert response.status_code == 201 and response.json["status"] == "completed", response.text
                executions[index].append(response.json["executionId"])
        for index, client in enumerate(clients):
            listed = client.simulate_get("/v1/executions", params={"limit": 100}).json["items"]
            assert sorted(item["executionId"] for item in listed) == sorted(executions[index])
            assert [w["id"] for w in client.simulate_get("/v1/workflows").json["items"]] == [workflows[index]]
            events = client.simulate_get("/v1/audit-events", params={"limit": 100, "sortOrder": "ASC"}).json["items"]
            other = set(executions[1 - index]) | {workflows[1 - index]}
            assert not {event["resourceId"] for event in events} & other
            assert {e["resourceId"] for e in events if e["resourceType"] == "execution"} == set(executions[index])
            verified = client.simulate_get(f"/v1/audit-events/{events[-1]['eventId']}/verify").json
            assert verified["isValid"] and verified["totalChecked"] == len(events)
    finally:
        for app in apps:
            app.state.close()
