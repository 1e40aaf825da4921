"""Unit tests of flowker.observability: the log formatters and their redaction, the
settings, and metrics in one process and across processes sharing a directory."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import re

import pytest

from flowker.errors import ConfigurationError
from flowker.observability.log_output import BatchingStreamHandler
from flowker.observability.logs import JsonFormatter, SafeField, TextFormatter, _direct_handler, log_line, logconfig
from flowker.observability.metrics import Metrics, MetricsDirectory, directory_exposition
from flowker.security.redaction import Redactor, install_log_redaction
from flowker.settings import Settings


def record(message: str = "hello %s", args=("world",), name: str = "flowker.test", **extra) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(name, logging.INFO, __file__, 1, message, args, None, extra=extra)
    return made


def test_json_lines_carry_the_named_fields():
    line = JsonFormatter().format(
        record("done", (), name="flowker.access", method="GET", route="/v1/x/{id}", status=200, duration_ms=1.5)
    )
    document = json.loads(line)
    assert document["message"] == "done" and document["logger"] == "flowker.access" and document["level"] == "INFO"
    assert document["route"] == "/v1/x/{id}" and document["status"] == 200 and document["duration_ms"] == 1.5
    assert document["time"].endswith("Z") and document["pid"] == os.getpid()
    assert "\n" not in line


def test_text_lines_put_fields_after_the_message():
    line = TextFormatter().format(record("execution ended", (), execution_id="e-1", workflow="pay roll"))
    assert line.split(" ", 1)[1].startswith("INFO flowker.test execution ended")
    assert line.endswith('execution_id=e-1 workflow="pay roll"')


def test_every_line_is_scrubbed_fields_and_tracebacks_included():
    secret = "s3cr3t-value-0123456789"
    redactor = Redactor()
    redactor.add_secret(secret)
    uninstall = install_log_redaction(redactor)
    try:
        try:
            raise ValueError(f"failed with {secret}")
        except ValueError:
            import sys

            failing = logging.getLogger("flowker.test").makeRecord(
                "flowker.test", logging.ERROR, __file__, 1, "call %s", (secret,), sys.exc_info(),
                extra={"principal": secret, "route": f"/x?token={secret}"},
            )  # fmt: skip
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(failing)
            assert secret not in line and "****" in line, line
    finally:
        uninstall()


class _Recording(Redactor):
    """A redactor that remembers what it was asked to scrub."""

    def __init__(self):
        super().__init__()
        self.asked: list[str] = []

    def scrub_text(self, text):
        self.asked.append(text)
        return super().scrub_text(text)


def test_known_safe_fields_skip_the_redactor_and_every_other_field_goes_through_it():
    redactor = _Recording()
    uninstall = install_log_redaction(redactor)
    try:
        made = record(
            "execution of workflow %s %s",
            ("payroll", "completed"),
            execution_id=SafeField("e-0190"),
            workflow="payroll",
        )
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(made)
            assert "e-0190" in line and "payroll" in line
    finally:
        uninstall()
    assert "payroll" in redactor.asked and "execution of workflow payroll completed" in redactor.asked
    assert not any("e-0190" in text for text in redactor.asked)
    document = json.loads(JsonFormatter().format(made))
    assert type(document["execution_id"]) is str and document["execution_id"] == "e-0190"


def _written_lines(handler: BatchingStreamHandler, stream: io.StringIO) -> list[str]:
    handler.flush()
    # The time is the only part that differs between two lines written a moment apart.
    return [re.sub(r'"time": "[^"]+"', '"time": "T"', line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("redactors", [0, 1, 2])
def test_a_line_written_without_a_record_is_the_record_paths_line_scrubbed_alike(redactors):
    secret = "s3cr3t-value-0123456789"
    installed = []
    for _ in range(redactors):
        redactor = Redactor()
        redactor.add_secret(secret)
        installed.append(install_log_redaction(redactor))
    direct_stream, record_stream = io.StringIO(), io.StringIO()
    direct, through_record = BatchingStreamHandler(direct_stream, 60.0), BatchingStreamHandler(record_stream, 60.0)
    through_record.addFilter(lambda made: True)  # a filter: the record path
    loggers = []
    for name, handler in (("flowker.test.direct", direct), ("flowker.test.record", through_record)):
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate, logger.level = False, logging.INFO
        loggers.append(logger)
    try:
        assert _direct_handler(loggers[0], logging.INFO) is direct
        assert _direct_handler(loggers[1], logging.INFO) is None
        for logger in loggers:
            fields = {"execution_id": SafeField("e-1"), "principal": secret, "status": 200, "duration_ms": 1.5}
            log_line(logger, logging.INFO, "call %s ü %d", (secret, 3), fields)
            log_line(logger, logging.WARNING, "https://user:hunter2-pass@example.com/x", (), {"workflow": "w"})
        direct_lines, record_lines = (
            _written_lines(direct, direct_stream),
            _written_lines(through_record, record_stream),
        )
    finally:
        for logger, handler in zip(loggers, (direct, through_record)):
            logger.removeHandler(handler)
            logger.propagate = True
        for uninstall in installed:
            uninstall()
    assert len(direct_lines) == 2
    assert direct_lines == [line.replace("flowker.test.record", "flowker.test.direct") for line in record_lines]
    text = "\n".join(direct_lines)
    assert "hunter2-pass" not in text and '"pid": %d' % os.getpid() in text
    assert (secret in text) is (redactors == 0)  # no redactor knows it: only credential-looking text is masked


def test_without_any_redactor_credential_looking_text_is_still_masked():
    line = JsonFormatter().format(record("GET %s", ("https://user:hunter2-pass@example.com/x?api_key=abc123456",)))
    assert "hunter2-pass" not in line and "abc123456" not in line


def test_log_settings_are_checked_and_defaults_follow_the_environment():
    assert Settings.from_mapping({}).effective_log_format == "text"
    production = Settings.from_mapping(
        {"env": "production", "api_keys": "a:" + "k" * 40, "secret_key": "q0cBSlwPOlVEa5hDxZ1qQ2hgXnlo0mX3M8GgR5S6qzU="}
    )
    assert production.effective_log_format == "json"
    assert Settings.from_mapping({"log_format": "JSON", "log_level": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigurationError, match="FLOWKER_LOG_FORMAT"):
        Settings.from_mapping({"log_format": "xml"})
    with pytest.raises(ConfigurationError, match="FLOWKER_LOG_LEVEL"):
        Settings.from_mapping({"log_level": "loud"})
    with pytest.raises(ConfigurationError, match="FLOWKER_METRICS"):
        Settings.from_mapping({"metrics": "maybe"})
    assert Settings.from_mapping({"metrics": "off"}).metrics is False


def test_the_gunicorn_logging_config_uses_the_formatter_and_turns_its_access_log_off():
    import logging.config

    config = logconfig(Settings.from_mapping({"log_format": "json", "log_level": "WARNING"}))
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["gunicorn.access"]["handlers"] == []
    formatter = logging.config.DictConfigurator(config).configure_formatter(dict(config["formatters"]["flowker"]))
    assert isinstance(formatter, JsonFormatter)


def test_metrics_off_record_nothing_and_labels_stay_bounded():
    off = Metrics.from_settings(Settings.from_mapping({"metrics": "off"}))
    off.execution_ended("wf", "completed", 1.0)
    assert not off.enabled and b"flowker_executions_total" not in off.exposition()
    metrics = Metrics.from_settings(Settings())
    metrics.http_request("BREW", None, 418, 0.01)
    metrics.breaker_state("svc", "half_open")
    metrics.breaker_state("svc", "no-such-state")  # ignored
    text = metrics.exposition().decode()
    assert 'flowker_http_requests_total{method="other",route="unmatched",status="418"} 1.0' in text
    assert 'flowker_circuit_breaker_state{executor="svc"} 1.0' in text


def _child_records(path: str, count: int) -> None:
    from flowker.observability.metrics import join_metrics_directory

    join_metrics_directory(path)
    metrics = Metrics.from_settings(Settings())
    for _ in range(count):
        metrics.execution_ended("wf", "completed", 0.1)
    metrics.audit_appended(count)


def test_processes_joining_one_directory_are_summed_and_it_is_removed():
    directory = MetricsDirectory.create(join=False)  # this test process keeps its own metrics
    try:
        assert oct(os.stat(directory.path).st_mode & 0o777) == "0o700"
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker process is
        children = [context.Process(target=_child_records, args=(directory.path, n)) for n in (2, 3)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=60)
            assert child.exitcode == 0
            directory.mark_dead(child.pid)
        text = directory_exposition(directory.path).decode()
        assert 'flowker_executions_total{status="completed",workflow="wf"} 5.0' in text
        assert "flowker_audit_appends_total 5.0" in text
    finally:
        directory.remove()
    assert not os.path.exists(directory.path)


@pytest.mark.parametrize(
    ("arguments", "settings", "message"),
    [
        (["--metrics-bind", "nonsense"], {}, "--metrics-bind 'nonsense': expected HOST:PORT"),
        (["--metrics-bind", "127.0.0.1:9464"], {"FLOWKER_METRICS": "off"}, "needs metrics on"),
        ([], {"FLOWKER_LOG_FORMAT": "xml"}, "FLOWKER_LOG_FORMAT must be one of json, text"),
    ],
)
def test_serve_refuses_bad_observability_options_before_binding(tmp_path, arguments, settings, message):
    from cli_runner import run_flowker

    database = f"sqlite:///{tmp_path}/serve.db"
    result = run_flowker("serve", "--bind", "127.0.0.1:0", *arguments, FLOWKER_DATABASE_URL=database, **settings)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "serve.db").exists()  # refused before the database was touched


def test_joining_a_missing_directory_is_a_configuration_error(tmp_path):
    from flowker.observability.metrics import join_metrics_directory

    with pytest.raises(ConfigurationError, match="does not exist"):
        join_metrics_directory(str(tmp_path / "gone"))
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") != str(tmp_path / "gone")


def test_a_process_that_leaves_its_directory_records_in_memory_again():
    """``flowker serve`` run in-process (click's test runner) joins a directory and removes
    it; runtimes built afterwards in that process must work as before."""
    directory = MetricsDirectory.create()
    try:
        joined = Metrics.from_settings(Settings())
        joined.execution_ended("wf", "completed", 0.1)
        assert 'workflow="wf"} 1.0' in joined.exposition().decode()
    finally:
        directory.remove()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    alone = Metrics.from_settings(Settings())
    alone.execution_ended("wf", "completed", 0.1)
    assert 'flowker_executions_total{status="completed",workflow="wf"} 1.0' in alone.exposition().decode()


def test_metrics_values_go_to_shared_memory_unless_tmpdir_is_set(tmp_path):
    from flowker.observability.metrics import _values_folder

    shared = tmp_path / "shm"
    shared.mkdir()
    assert _values_folder({}, str(shared)) == str(shared)  # tmpfs: no page write-back per request
    assert _values_folder({"TMPDIR": str(tmp_path)}, str(shared)) is None  # the operator's choice wins
    assert _values_folder({}, str(tmp_path / "missing")) is None  # no tmpfs: the default temporary folder


def test_the_execution_line_takes_the_direct_way_past_its_loggers_null_handler():
    # flowker.executions keeps a NullHandler (an unconfigured process stays quiet); with a
    # JSON stream configured above it, its lines must still be written without a LogRecord.
    from flowker.runner import run_telemetry

    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, 60.0)
    handler.setFormatter(JsonFormatter())
    parent = logging.getLogger("flowker")
    saved = (parent.handlers[:], parent.level, parent.propagate)
    parent.handlers[:] = [handler]
    parent.setLevel(logging.INFO)
    parent.propagate = False
    made: list[logging.LogRecord] = []
    handler.emit = made.append  # type: ignore[method-assign]  # the record way ends here
    try:
        executions = run_telemetry.logger
        assert any(type(h) is logging.NullHandler for h in executions.handlers)
        assert _direct_handler(executions, logging.INFO) is handler
        run_telemetry.RunTelemetry(_NoMetrics(), "e-1", "orders").execution_ended("completed", 12.5)
        lines = _written_lines(handler, stream)
    finally:
        parent.handlers[:], parent.level, parent.propagate = saved
    assert made == []  # no LogRecord: the direct way
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["message"] == "execution of workflow orders completed"
    assert line["execution_id"] == "e-1" and line["duration_ms"] == 12.5


class _NoMetrics:
    def execution_ended(self, workflow, status, seconds) -> None:
        pass


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quotes " and \\ backslashes',
        "control \x00\x01\x1f\n\t\r characters",
        "unicode é ü 日本 \u2028 \U0001f600",
        SafeField("/v1/workflows/{workflow_id}"),
        0,
        -17,
        2**70,
        1.5,
        0.1,
        1e-7,
        float("nan"),
        float("inf"),
        -float("inf"),
        True,
        False,
        ["list", 1],
        {"nested": "dict"},
        object(),
    ],
    ids=repr,
)
def test_a_json_line_joined_from_pieces_is_what_the_json_encoder_writes(value):
    """The line is built from pieces, not by encoding a dict: for every kind of value it
    must be the same text json.JSONEncoder(ensure_ascii=False, default=str) writes."""
    formatter = JsonFormatter()
    fields = {"method": "POST", "status": value, "principal": value, "attempts": value, "request_id": None}

    def scrub(text):
        return text

    line = formatter.json_line("2026-12-07T00:00:00.000Z", "INFO", "flowker.access", 'say "hi"', 4242, fields, scrub)
    expected = {
        "time": "2026-12-07T00:00:00.000Z",
        "level": "INFO",
        "logger": "flowker.access",
        "message": 'say "hi"',
        "pid": 4242,
        "method": "POST",
        "status": value,
        "principal": value,
        "attempts": value,
    }
    assert line == json.JSONEncoder(ensure_ascii=False, default=str).encode(expected)
    with_traceback = formatter.json_line("t", "ERROR", "x", "m", None, {}, scrub, 'Trace "1"\n', "stack\u00e9")
    assert with_traceback == json.JSONEncoder(ensure_ascii=False).encode(
        {
            "time": "t",
            "level": "ERROR",
            "logger": "x",
            "message": "m",
            "pid": None,
            "exception": 'Trace "1"\n',
            "stack": "stack\u00e9",
        }
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_childs_direct_lines_carry_the_childs_pid(tmp_path):
    """The direct path keeps the pid (a system call per line otherwise): a forked child
    (a gunicorn worker) must still write its own."""
    out = tmp_path / "lines.txt"
    stream = open(out, "w")  # noqa: SIM115 - closed below, shared with the child
    handler = BatchingStreamHandler(stream, 60.0)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("flowker.test.fork")
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        assert _direct_handler(logger, logging.INFO) is handler
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log_line(logger, logging.INFO, "from the child", (), {})
                handler.flush()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        log_line(logger, logging.INFO, "from the parent", (), {})
        handler.flush()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        stream.close()
    lines = {json.loads(line)["message"]: json.loads(line)["pid"] for line in out.read_text().splitlines()}
    assert lines == {"from the child": pid, "from the parent": os.getpid()}
