"""``flowker run --record FILE``: a real run written down as a WorkflowTest case.

:class:`RunRecorder` wraps the transport of each executor session the run opens
(``ExecutorPool.wrap_session``) and keeps, per request to one of the executor's
endpoints, the answer (status, headers, body) or the failure (timeout, connection
error). :meth:`RunRecorder.case` then makes the case: the input, one fixture per
``executor.endpoint`` answering the requests in the order they came, and ``expect``
from the run (status, error code, output, every step's status and attempts, the number
of requests per endpoint). Everything written goes through the run's redactor: values
of the secrets the run resolved and secret-looking fields are masked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter

from flowker.runner.executor_client import ExecutorDefinition
from flowker.runner.workflow_tests.transport import endpoint_routes

# Transport-level headers: the fake transport sets its own, and they change between runs.
UNRECORDED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding", "date", "server"}
)


@dataclass
class RecordedCall:
    call: str  # executor.endpoint
    answer: dict  # {status, headers?, body?} or {raise: timeout|connection_error}


class _RecordingAdapter(BaseAdapter):
    """Sends through the real (SSRF-pinned) adapter and keeps what came back."""

    def __init__(self, inner: BaseAdapter, recorder: "RunRecorder", definition: ExecutorDefinition):
        super().__init__()
        self.inner = inner
        self.recorder = recorder
        self.executor = definition.name
        self.routes = endpoint_routes(definition)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        call = self._call(request)
        try:
            response = self.inner.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        except requests.Timeout:
            self.recorder.add(call, {"raise": "timeout"})
            raise
        except requests.ConnectionError:
            self.recorder.add(call, {"raise": "connection_error"})
            raise
        body = response.content  # read here (capped by the inner adapter); the client reuses it
        self.recorder.add(call, self.recorder.answer(response, body))
        return response

    def _call(self, request) -> str | None:
        from urllib.parse import urlsplit

        parts = urlsplit(request.url or "")
        for route in self.routes:
            if (
                route.method == str(request.method).upper()
                and (parts.scheme.lower(), parts.netloc.lower()) == (route.scheme, route.netloc)
                and route.pattern.match(parts.path)
            ):
                return f"{self.executor}.{route.name}"
        return None  # e.g. a redirect hop: not one of the executor's endpoints

    def close(self) -> None:
        self.inner.close()


class RunRecorder:
    def __init__(self, redactor):
        self.redactor = redactor
        self.calls: list[RecordedCall] = []

    def wrap(self, definition: ExecutorDefinition, session: requests.Session) -> requests.Session:
        wrapped: dict[int, _RecordingAdapter] = {}
        for prefix, adapter in list(session.adapters.items()):
            recording = wrapped.setdefault(id(adapter), _RecordingAdapter(adapter, self, definition))
            session.adapters[prefix] = recording
        return session

    def add(self, call: str | None, answer: dict) -> None:
        if call is not None:
            self.calls.append(RecordedCall(call, answer))

    def answer(self, response: requests.Response, body: bytes) -> dict:
        from flowker.runner.executor_client import parse_body

        headers = {name: value for name, value in response.headers.items() if name.lower() not in UNRECORDED_HEADERS}
        answer: dict[str, Any] = {"status": response.status_code}
        if headers:
            answer["headers"] = self.redactor.redact_headers(headers)
        parsed = parse_body(body, response.headers.get("Content-Type", ""), response.encoding)
        if parsed is not None:
            answer["body"] = self.redactor.redact(parsed)
        return answer

    def case(self, name: str, input_data: Any, execution, steps: list) -> dict:
        """The WorkflowTest case of the run (``steps``: the engine's StepRecords, in order)."""
        fixtures: dict[str, list] = {}
        for recorded in self.calls:
            fixtures.setdefault(recorded.call, []).append(recorded.answer)
        fixture_list = []
        for call, answers in fixtures.items():
            if len(answers) == 1 and "raise" in answers[0]:
                fixture_list.append({"call": call, "raise": answers[0]["raise"]})
            else:
                fixture_list.append({"call": call, "respond": answers[0] if len(answers) == 1 else answers})
        expect: dict[str, Any] = {"status": execution.status}
        failed = [step for step in steps if step.status == "failed"]
        if execution.status == "failed" and failed and failed[0].error_code:
            expect["error"] = failed[0].error_code
        if execution.status == "completed" and execution.final_output is not None:
            expect["output"] = without_response_headers(self.redactor.redact(execution.final_output))
        expect["steps"] = {
            step.node.id: {"status": step.status, "attempts": step.attempts} if step.call is not None else step.status
            for step in steps
        }
        expect["calls"] = {call: len(answers) for call, answers in fixtures.items()}
        case = {
            "name": name,
            "input": self.redactor.redact(input_data or {}),
            "fixtures": fixture_list,
            "expect": expect,
        }
        return json.loads(json.dumps(case, default=str))  # plain, unshared values: YAML without anchors


def without_response_headers(value: Any) -> Any:
    """``value`` without the ``headers`` of executor responses (``{status, headers, body}``):
    the fake transport's headers are not the server's, and ``output`` matches a subset."""
    if isinstance(value, dict):
        if set(value) == {"status", "headers", "body"}:
            return {"status": value["status"], "body": without_response_headers(value["body"])}
        return {key: without_response_headers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_response_headers(item) for item in value]
    return value


def write_case(path: Path, workflow: str, case: dict) -> str:
    """Write ``case`` to ``path``: a new WorkflowTest file, or appended to the cases of
    an existing one for the same workflow. Returns what was done, for a message."""
    import yaml

    header = (
        "# Recorded by `flowker run --record`: the answers the executors gave, secrets redacted.\n"
        "# Run it with: flowker test <this file> <the workflow's and executors' folders>\n"
    )
    if path.exists():
        from flowker.validation.loader import load_spec_file

        document = load_spec_file(path)
        body = {"kind": document.kind, **document.body}
        names = {c.get("name") for c in body.get("cases") or [] if isinstance(c, dict)}
        base, number = case["name"], 2
        while case["name"] in names:
            case["name"], number = f"{base} ({number})", number + 1
        body["cases"] = list(body.get("cases") or []) + [case]
        done = f"case {case['name']!r} added to {path}"
    else:
        body = {"kind": "WorkflowTest", "workflow": workflow, "cases": [case]}
        done = f"case {case['name']!r} written to {path}"
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110)
    path.write_text(header + text, encoding="utf-8")
    return done
