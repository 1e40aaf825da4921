"""flowker.tracing without a server: which OTEL_* variables turn traces on, the clear
errors for what Flowker cannot do, nothing of the SDK loaded when off, and the span
helpers (incoming traceparent, the headers sent to an executor, the export at shutdown).
The full path - flowker serve, an executor, an OTLP receiver - is tests/e2e/test_e2e_tracing.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowker.errors import ConfigurationError
from flowker.settings import Settings
from flowker.tracing import NO_TRACING, Tracing, traces_enabled, tracing_from_settings

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    "environ, enabled",
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "flowker"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
    ],
)
def test_which_variables_turn_traces_on(environ, enabled):
    assert traces_enabled(environ) is enabled
    settings = Settings.load(environ={"FLOWKER_DATABASE_URL": "sqlite:///x.db", **environ})
    assert (tracing_from_settings(settings) is not NO_TRACING) is enabled


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ],
)
def test_what_flowker_cannot_do_is_a_clear_error(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        traces_enabled(environ)


def test_serve_refuses_an_unsupported_exporter_before_it_starts(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "FLOWKER_DATABASE_URL": f"sqlite:///{tmp_path}/flowker.db",
        "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
        "OTEL_TRACES_EXPORTER": "zipkin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "flowker", "serve", "--bind", "127.0.0.1:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "OTEL_TRACES_EXPORTER=zipkin" in done.stderr
    assert "listening" not in done.stdout + done.stderr


def test_settings_keep_the_otel_variables_out_of_their_repr():
    settings = Settings.load(
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cr3t"}
    )
    assert dict(settings.otel_environment)["OTEL_EXPORTER_OTLP_HEADERS"] == "authorization=Bearer s3cr3t"
    assert "s3cr3t" not in repr(settings)
    # Not a FLOWKER_* setting: a bootstrap file cannot set it.
    assert (
        Settings.from_mapping({"otel_environment": [["OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT]]}).otel_environment == ()
    )


def test_off_a_run_loads_nothing_of_opentelemetry(tmp_path):
    """``flowker run`` without OTEL_* variables: the SDK is never imported (near-zero cost)."""
    workflow = tmp_path / "one.yaml"
    workflow.write_text(
        textwrap.dedent(
            """\
            kind: Workflow
            name: off
            nodes:
              - {id: start, type: trigger, data: {triggerType: manual}}
              - {id: out, type: action, data: {actionType: set_output, output: {ok: true}}}
            edges:
              - {source: start, target: out}
            """
        )
    )
    script = textwrap.dedent(
        f"""\
        import sys
        from flowker.cli import main
        try:
            main(["run", {str(workflow)!r}])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
        print("LOADED", loaded, file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert '"ok": true' in done.stdout
    assert "LOADED []" in done.stderr and "trace id" not in done.stderr


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    started = Tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, exporter=exporter).start()
    started.exporter = exporter  # type: ignore[attr-defined]
    try:
        yield started
    finally:
        started.shutdown()


def test_an_incoming_traceparent_is_continued_and_a_malformed_one_ignored(tracing):
    parent = tracing.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}.get)
    with tracing.execution("e-1", parent) as span:
        assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.extract({}.get) is None
    with tracing.execution("e-2", tracing.extract({"traceparent": "00-zz-not-a-traceparent"}.get)) as span:
        assert span.trace_id is not None and span.trace_id != "0af7651916cd43dd8448eb211c80319c"
    unsampled = tracing.extract({"traceparent": "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}.get)
    with tracing.execution("e-3", unsampled) as span:
        assert span.trace_id is None  # not recorded anywhere: the results name no trace
    tracing.shutdown()
    ended = tracing.exporter.get_finished_spans()
    assert [s.attributes["flowker.execution.id"] for s in ended] == ["e-1", "e-2"]
    assert ended[0].parent is not None and ended[0].parent.span_id == 0xB7AD6B7169203331
    assert ended[1].parent is None


def test_an_executor_gets_exactly_one_traceparent_its_client_span(tracing):
    with tracing.execution("e-1") as run, tracing.step("call", "executor", "wf", "e-1"):
        with tracing.client("svc", "POST", "http://127.0.0.1:9/x", {"api_key": "k-123"}, str, 1) as call:
            sent = call.headers({"TraceParent": "00-workflow-set", "X-Other": "1"})
    assert [name for name in sent if name.lower() == "traceparent"] == ["traceparent"]
    assert sent["X-Other"] == "1"
    tracing.shutdown()
    client, step, execution = tracing.exporter.get_finished_spans()
    # Sampled (and, for a trace started here, W3C level 2's random-trace-id flag: 03).
    assert sent["traceparent"] == f"00-{run.trace_id}-{client.context.span_id:016x}-03"
    assert client.parent.span_id == step.context.span_id and step.parent.span_id == execution.context.span_id
    assert client.attributes["url.full"] == "http://127.0.0.1:9/x?api_key=k-123"  # the redactor given: str here


def test_an_exception_marks_the_span_by_its_code_never_its_message(tracing):
    from flowker.error_codes import ErrorCode
    from flowker.errors import FlowkerError

    with pytest.raises(FlowkerError):
        with tracing.step("n", "action", "wf", "e-1"):
            raise FlowkerError("the token s3cr3t was refused", code=ErrorCode.EXECUTOR_CALL_FAILED)
    with pytest.raises(TimeoutError):
        with tracing.client("svc", "GET", "http://127.0.0.1:9/", None, str, 2):
            raise TimeoutError("slow")
    tracing.shutdown()
    step, client = tracing.exporter.get_finished_spans()
    assert (
        step.attributes["error.type"] == ErrorCode.EXECUTOR_CALL_FAILED.value
        and step.status.status_code.name == "ERROR"
    )
    assert "s3cr3t" not in repr(step.attributes) and not step.events
    assert client.attributes["error.type"] == "timeout" and client.attributes["http.request.resend_count"] == 1


def test_after_shutdown_spans_are_inert(tracing):
    tracing.shutdown()
    with tracing.execution("late") as span:
        assert span.trace_id is None
    assert tracing.exporter.get_finished_spans() == ()


def test_an_unsampled_trace_makes_no_child_spans_yet_propagates(tracing):
    unsampled = tracing.extract({"traceparent": "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}.get)
    with tracing.execution("e-1", unsampled) as run:
        assert run.trace_id is None
        with tracing.step("call", "executor", "wf", "e-1") as step:
            with tracing.client("svc", "GET", "http://127.0.0.1:9/", None, str, 1) as call:
                sent = call.headers({})
    assert step.trace_id is None
    assert sent["traceparent"].startswith("00-2af7651916cd43dd8448eb211c80319c-") and sent["traceparent"].endswith(
        "-00"
    )
    tracing.shutdown()
    assert tracing.exporter.get_finished_spans() == ()
