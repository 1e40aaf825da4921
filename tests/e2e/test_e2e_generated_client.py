"""A client generated from the served ``/openapi.json`` with openapi-python-client, as
integrators do, works as it comes: the generator warns about nothing in the document,
every generated module imports, and the client drives a round trip against a real
``flowker serve``: create an executor and a workflow, activate, execute, read the
results, verify the audit chain."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import yaml

from e2e_helpers import API_KEY, api_session, executor_yaml, workflow_yaml

PACKAGE = "flowker_generated_client"


def generate(document: dict, folder: Path) -> subprocess.CompletedProcess:
    (folder / "openapi.json").write_text(json.dumps(document))
    # No post hooks: formatting the output (ruff) is not what is tested.
    (folder / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yaml",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def import_all(folder: Path):
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module(PACKAGE)
        names = [info.name for info in pkgutil.walk_packages(package.__path__, PACKAGE + ".")]
        modules = {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(folder))
    return package, modules


def body_model(operation, data: dict):
    """The operation's body model (named after the spec schema's title), built from ``data``."""
    return inspect.signature(operation.sync_detailed).parameters["body"].annotation.from_dict(data)


def test_a_generated_client_imports_and_drives_a_round_trip(start_server, scorer, tmp_path):
    server = start_server()
    document = api_session().get(f"{server.url}/openapi.json").json()

    generated = generate(document, tmp_path)
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output
    package, modules = import_all(tmp_path)
    api = f"{PACKAGE}.api"
    operations = [name for name in modules if name.startswith(api + ".") and name.count(".") == 3]
    expected = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert len(operations) == len(expected), sorted(operations)  # one module per operation, none skipped

    client = modules[PACKAGE + ".client"].AuthenticatedClient(
        base_url=server.url, token=API_KEY, prefix="", auth_header_name="X-API-Key", raise_on_unexpected_status=True
    )
    executors, workflows = modules[api + ".executors.create_executor"], modules[api + ".workflows.create_workflow"]

    created = executors.sync_detailed(
        client=client, body=body_model(executors, yaml.safe_load(executor_yaml(scorer.url)))
    )
    assert created.status_code == 201, created.content
    assert created.headers["X-Request-ID"]
    made = workflows.sync_detailed(client=client, body=body_model(workflows, yaml.safe_load(workflow_yaml())))
    assert made.status_code == 201, made.content
    workflow_id = made.parsed.workflow_id

    activated = modules[api + ".workflows.activate_workflow"].sync(workflow_id, client=client)
    assert activated.status.value == "active" and activated.id == workflow_id
    read = modules[api + ".workflows.get_workflow"].sync(workflow_id, client=client)
    assert read.name == "e2e-score"

    execute = modules[api + ".executions.execute_workflow"]
    request = modules[PACKAGE + ".models"].ExecuteRequest.from_dict({"inputData": {"amount": 42}})
    execution = execute.sync(workflow_id, client=client, body=request)
    assert execution.status.value == "completed", execution
    results = modules[api + ".executions.get_execution_results"].sync(execution.execution_id, client=client)
    assert results.final_output == {"label": "scored", "score": 42, "amount": 42}
    assert [step.status.value for step in results.step_results] == ["completed", "completed", "completed"]

    events = modules[api + ".audit.list_audit_events"].sync(client=client, limit=100)
    assert events.items and not events.has_more
    newest = max(events.items, key=lambda event: event.timestamp)
    verification = modules[api + ".audit.verify_audit_chain"].sync(newest.event_id, client=client)
    assert verification.is_valid is True and verification.total_checked == len(events.items)

    # An error comes back as the Error model with a catalog code.
    missing = modules[api + ".workflows.get_workflow"].sync_detailed(
        "00000000-0000-4000-8000-000000000000", client=client
    )
    assert missing.status_code == 404 and missing.parsed.code == "FLK-0100"
