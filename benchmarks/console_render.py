"""How long the web console takes to draw a large execution: 100 nodes, 99 executor calls
of 5 attempts each (DESIGN §15; issue 17's target: under 1 s).

    .venv/bin/python benchmarks/console_render.py [--runs 10] [--nodes 100] [--attempts 5]

The console's own shell and scripts are served by its real resources (a Falcon app with
only the ``/ui`` routes, on 127.0.0.1); the three ``/v1`` answers the execution page reads
(the execution, its workflow, its results) are generated here and handed to the page by
Playwright, so the figure is the browser's, not the server's. Debian's Chromium
(``/usr/bin/chromium``) draws it headless at 1280×800.

Printed per run and as median / max: ``render`` (data in hand to graph, timeline and step
list in the DOM with layout done; measured in the page with performance.now()) and
``page`` (navigation start to the drawn page, the fetches and module loads included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
WORKFLOW_ID = "0190a000-0000-7000-8000-000000000001"
EXECUTION_ID = "0190a000-0000-7000-8000-000000000002"
TARGET_MS = 1000.0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def big_execution(nodes: int = 100, attempts: int = 5) -> tuple[dict, dict, dict]:
    """(execution summary, workflow, results) of a finished run: a trigger fanning out to
    ten chains of executor calls, each call answering after ``attempts`` attempts; one
    call failed at the end (so the run failed) and the nodes after it skipped."""
    started = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
    graph_nodes = [{"id": "n0", "type": "trigger", "name": "Start", "data": {"triggerType": "manual"}}]
    edges = []
    steps = [
        {
            "stepNumber": 1,
            "stepName": "Start",
            "nodeId": "n0",
            "nodeType": "trigger",
            "status": "completed",
            "attempts": 1,
            "durationMs": 0,
            "executedAt": _iso(started),
            "completedAt": _iso(started),
            "output": {},
        }
    ]
    clock = started
    failed_at = nodes - 5
    for index in range(1, nodes):
        node_id = f"n{index}"
        graph_nodes.append(
            {
                "id": node_id,
                "type": "executor",
                "name": f"Call {index}",
                "data": {"executor": "bench", "endpoint": "call", "body": {"item": index}},
            }
        )
        edges.append({"source": f"n{max(0, index - 10)}", "target": node_id})
        status = "completed" if index < failed_at else "failed" if index == failed_at else "skipped"
        if status == "skipped":
            steps.append(
                {
                    "stepNumber": index + 1,
                    "stepName": f"Call {index}",
                    "nodeId": node_id,
                    "nodeType": "executor",
                    "status": "skipped",
                    "attempts": 0,
                    "durationMs": 0,
                }
            )
            continue
        begin = clock
        log = []
        for attempt in range(1, attempts + 1):
            log.append(
                {
                    "attempt": attempt,
                    "startedAt": _iso(clock),
                    "statusCode": 503 if attempt < attempts else 200,
                    "outcome": "retried" if attempt < attempts else "answered",
                    "durationMs": 12.5,
                }
            )
            clock += timedelta(milliseconds=40)
        step = {
            "stepNumber": index + 1,
            "stepName": f"Call {index}",
            "nodeId": node_id,
            "nodeType": "executor",
            "status": status,
            "attempts": attempts,
            "durationMs": (clock - begin).total_seconds() * 1000,
            "executedAt": _iso(begin),
            "completedAt": _iso(clock),
            "input": {"executor": "bench", "endpoint": "call", "body": {"item": index}},
            "output": {
                "status": 200,
                "headers": {"Content-Type": "application/json"},
                "body": {"item": index, "values": list(range(20))},
            },
            "callDetails": {
                "method": "POST",
                "url": f"https://bench.example/call/{index}",
                "statusCode": 200,
                "attempts": attempts,
                "attemptLog": log,
                "durationMs": 62.5 * attempts,
            },
        }
        if status == "failed":
            step["errorMessage"] = "executor 'bench' endpoint POST https://bench.example/call answered HTTP 503"
        steps.append(step)
    workflow = {
        "id": WORKFLOW_ID,
        "name": "bench-100",
        "status": "active",
        "version": 3,
        "nodes": graph_nodes,
        "edges": edges,
        "createdAt": _iso(started),
        "updatedAt": _iso(started),
    }
    summary = {
        "executionId": EXECUTION_ID,
        "workflowId": WORKFLOW_ID,
        "status": "failed",
        "currentStepNumber": nodes,
        "totalSteps": nodes,
        "startedAt": _iso(started),
        "completedAt": _iso(clock),
    }
    results = {
        "executionId": EXECUTION_ID,
        "workflowId": WORKFLOW_ID,
        "status": "failed",
        "stepResults": steps,
        "finalOutput": None,
        "startedAt": _iso(started),
        "completedAt": _iso(clock),
    }
    return summary, workflow, results


def serve_api_answers(page, summary: dict, workflow: dict, results: dict) -> None:
    """Playwright routes answering the execution page's /v1 reads with these bodies."""
    answers = {
        "/v1/me": {
            "name": "bench",
            "kind": "api_key",
            "roles": ["admin"],
            "permissions": ["read", "run", "edit", "audit"],
            "workflows": None,
        },
        f"/v1/executions/{EXECUTION_ID}": summary,
        f"/v1/workflows/{WORKFLOW_ID}": workflow,
        f"/v1/executions/{EXECUTION_ID}/results": results,
        "/openapi.json": {"openapi": "3.1.0", "paths": {}},
    }
    for path, body in answers.items():
        page.route(f"**{path}", _answer(json.dumps(body)))


def _answer(text: str):
    def fulfil(route) -> None:
        route.fulfill(status=200, content_type="application/json", body=text)

    return fulfil


def console_only_server():
    """The console's real routes (and nothing else) on 127.0.0.1, in a thread."""
    import falcon

    from flowker.console import console_routes
    from flowker.settings import Settings

    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    for template, resource in console_routes(Settings()):
        app.add_route(template, resource)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return server, thread


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--attempts", type=int, default=5)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    summary, workflow, results = big_execution(args.nodes, args.attempts)
    server, thread = console_only_server()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    render_ms, page_ms = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            serve_api_answers(page, summary, workflow, results)
            page.goto(base + "/ui/")
            page.evaluate("sessionStorage.setItem('flowker.apiKey', 'bench')")
            for run in range(args.runs + 1):  # the first run warms the module cache and is not counted
                page.goto(f"{base}/ui/executions/{EXECUTION_ID}")
                page.wait_for_selector("#view [data-render-ms]")
                drawn = float(page.get_attribute("#view [data-render-ms]", "data-render-ms"))
                whole = page.evaluate("performance.now()")
                nodes = page.locator("svg.graph .node").count()
                attempts = page.locator("svg.gantt .gantt-attempt").count()
                if run:
                    render_ms.append(drawn)
                    page_ms.append(whole)
                    print(
                        f"run {run}: render {drawn:.1f} ms, page {whole:.1f} ms ({nodes} nodes, {attempts} attempt bars)"
                    )
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    median = statistics.median(render_ms)
    print(
        f"render: median {median:.1f} ms, max {max(render_ms):.1f} ms; page: median {statistics.median(page_ms):.1f} ms, max {max(page_ms):.1f} ms"
    )
    print(f"target: render under {TARGET_MS:.0f} ms: {'met' if max(render_ms) < TARGET_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
