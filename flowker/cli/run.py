"""``flowker run FILE --input JSON|@file [--executors DIR] [--db URL]``: run a workflow locally.

The workflow file and its executors (``--executors DIR``, repeatable; by default the
``executors/`` folder next to a ``workflows/`` folder holding FILE) are validated with
every check ``flowker validate`` runs, loaded into an embedded SQLite database (a
temporary one unless ``--db`` names one) with their audit entries, activated and run
(the plan ``flowker apply --activate`` makes: :func:`flowker.catalog.spec_sync.install_for_run`).
Each step is shown on stderr as it starts and ends; the final output is printed as JSON
on stdout. With traces on (`OTEL_*`, docs/tracing.md) the last stderr line names the trace id;
the spans are exported before the command exits.

Exit codes: 0 the run completed, 1 the spec is invalid or the run failed, 2 usage error
(``--input`` that is not a JSON object, or that the trigger's ``inputSchema`` refuses:
every problem is listed, nothing is stored).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from flowker.cli.common import load_settings
from flowker.validation.loader import SPEC_SUFFIXES

MAX_INPUT_BYTES = 1024 * 1024


def parse_input(value: str | None) -> dict:
    """``--input``: JSON text, or ``@path`` to a JSON file, or ``@-`` for stdin."""
    if value is None:
        return {}
    if value.startswith("@"):
        name = value[1:]
        try:
            text = sys.stdin.read(MAX_INPUT_BYTES + 1) if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {name}: {exc.strerror}", param_hint="--input") from None
        except UnicodeDecodeError:
            raise click.BadParameter(f"{name} is not UTF-8 text", param_hint="--input") from None
    else:
        text = value
    if len(text.encode("utf-8")) > MAX_INPUT_BYTES:
        raise click.BadParameter("the input is larger than 1 MiB", param_hint="--input")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--input") from None
    if not isinstance(data, dict):
        raise click.BadParameter("the input must be a JSON object", param_hint="--input")
    return data


def default_executor_dirs(workflow_file: Path) -> list[Path]:
    for parent in workflow_file.resolve().parents:
        if parent.name == "workflows":
            candidate = parent.parent / "executors"
            return [candidate] if candidate.is_dir() else []
    return []


class ProgressPrinter:
    """Prints each step as it starts and ends (stderr, so stdout is only the output JSON)."""

    def __init__(self, total: int, echo=None):
        self.total = total
        self.echo = echo or (lambda line: click.echo(line, err=True))

    def step_started(self, node) -> None:
        label = f" ({node.name})" if node.name != node.id else ""
        self.echo(f"-> [{node.step_number}/{self.total}] {node.id}{label} {node.type} ...")

    def step_finished(self, record) -> None:
        node = record.node
        prefix = f"   [{node.step_number}/{self.total}] {node.id}"
        if record.status == "skipped":
            self.echo(f"{prefix} skipped ({record.reason})")
            return
        attempts = record.attempts
        line = (
            f"{prefix} {record.status} in {record.duration_ms:.1f} ms, {attempts} attempt{'s' if attempts != 1 else ''}"
        )
        if record.call is not None and record.call.status_code is not None:
            line += f", HTTP {record.call.status_code}"
        if record.error:
            line += f": {record.error}"
        self.echo(line)


@click.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--input", "input_value", metavar="JSON|@FILE", help="The trigger input: JSON text or @file (@- is stdin)."
)
@click.option(
    "--executors",
    "executor_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of executor spec files (repeatable). Default: executors/ beside the workflows/ folder.",
)
@click.option(
    "--db",
    "database_url",
    metavar="URL|PATH",
    help="Database URL or SQLite file path to keep the run in (default: a temporary SQLite file).",
)
@click.option(
    "--record",
    "record_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run as a WorkflowTest case to FILE (appended when FILE is a test of this workflow).",
)
@click.option("--record-name", metavar="NAME", help="The recorded case's name (default: 'recorded run').")
@click.pass_context
def run(ctx, file, input_value, executor_dirs, database_url, record_file, record_name):
    """Validate and run a workflow file locally; print the final output as JSON."""
    input_data = parse_input(input_value)
    documents, problems = _load(file, list(executor_dirs) or default_executor_dirs(file))
    if record_file is not None:
        _check_record_file(record_file, documents[0].name if documents else "")
    with tempfile.TemporaryDirectory(prefix="flowker-run-") as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'flowker.db'}"
        settings = load_settings(ctx, database_url=url)
        from flowker.plugins import load_registry

        registry = load_registry(settings)
        if not problems:
            from flowker.security.secret_policy import SecretReferencePolicy
            from flowker.validation.checks import validate_documents

            problems = validate_documents(
                documents, registry, secret_policy=SecretReferencePolicy.from_settings(settings)
            )
        if problems:
            for problem in problems:
                click.echo(problem.format(), err=True)
            click.echo(f"{file}: {len(problems)} problem(s); nothing was run", err=True)
            sys.exit(1)
        _check_input(file, documents[0].body, input_data)
        recording = _Recording(record_file, record_name or "recorded run") if record_file is not None else None
        execution = _run(
            settings, registry, documents, input_data, recover=database_url is not None, recording=recording
        )
        if recording is not None:
            workflow_name = next(d.name for d in documents if d.kind == "Workflow")
            click.echo(recording.write(workflow_name, input_data, execution), err=True)
    if execution.status != "completed":
        click.echo(f"execution {execution.id} failed: {execution.error_message}", err=True)
        sys.exit(1)
    click.echo(json.dumps(execution.final_output, indent=2, ensure_ascii=False, sort_keys=False))


def _check_input(file: Path, workflow_body: dict, input_data: dict) -> None:
    """Refuse an input its trigger's inputSchema does not accept, before anything is stored
    (the execution service checks again; this also keeps the workflow out of ``--db``)."""
    from flowker.errors import InputValidationError
    from flowker.validation.input_schema import InputValidator, trigger_input_schema

    found = trigger_input_schema(workflow_body)
    if found is None:
        return
    problems = InputValidator(found[1]).problems(input_data)
    if not problems:
        return
    click.echo(f"{file}: the input does not match the trigger's inputSchema:", err=True)
    for problem in problems:
        click.echo(f"  {problem['path'] or '(the input)'}: {problem['message']}", err=True)
    click.echo(f"{len(problems)} problem(s) in --input; nothing was run", err=True)
    sys.exit(InputValidationError.exit_code)


def _load(file: Path, executor_dirs: list[Path]):
    from flowker.errors import SpecError
    from flowker.validation.documents import ExecutorSpec, WorkflowSpec
    from flowker.validation.loader import load_spec_file

    problems: list = []
    documents: list[ExecutorSpec | WorkflowSpec] = []
    try:
        workflow = load_spec_file(file)
    except SpecError as exc:
        return [], exc.problems
    if not isinstance(workflow, WorkflowSpec):
        raise click.BadParameter(f"{file} is a {workflow.kind}, not a Workflow", param_hint="FILE")
    documents.append(workflow)
    for folder in executor_dirs:
        for path in sorted(folder.rglob("*")):
            if path.suffix not in SPEC_SUFFIXES or not path.is_file():
                continue
            try:
                document = load_spec_file(path)
            except SpecError as exc:
                problems.extend(exc.problems)
                continue
            if isinstance(document, ExecutorSpec):
                documents.append(document)
    return documents, problems


class _Recording:
    """``--record``: the recorder wrapped around the run's executor sessions, and the steps seen."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        self.recorder: Any = None  # a RunRecorder once attached
        self.steps: list = []

    def attach(self, service) -> None:
        from flowker.runner.workflow_tests.recording import RunRecorder

        self.recorder = RunRecorder(service.redactor)
        service.executors.wrap_session = self.recorder.wrap

    def observer(self, printer: "ProgressPrinter"):
        recording = self

        class _Observer:
            def step_started(self, node) -> None:
                printer.step_started(node)

            def step_finished(self, record) -> None:
                recording.steps.append(record)
                printer.step_finished(record)

        return _Observer()

    def write(self, workflow: str, input_data, execution) -> str:
        from flowker.runner.workflow_tests.recording import write_case

        assert self.recorder is not None  # attached before the run
        case = self.recorder.case(self.name, input_data, execution, self.steps)
        return write_case(self.path, workflow, case)


def _check_record_file(path: Path, workflow: str) -> None:
    """Refuse before running when FILE exists and is not a WorkflowTest file of ``workflow``."""
    if not path.exists():
        if not path.parent.is_dir():
            raise click.BadParameter(f"no folder {path.parent} to write {path.name} in", param_hint="--record")
        return
    from flowker.errors import SpecError
    from flowker.validation.loader import load_spec_file

    try:
        document = load_spec_file(path)
    except SpecError:
        document = None
    if document is None or document.kind != "WorkflowTest":
        raise click.BadParameter(f"{path} exists and is not a WorkflowTest file", param_hint="--record")
    if document.body.get("workflow") != workflow:
        raise click.BadParameter(
            f"{path} tests workflow {document.body.get('workflow')!r}, not {workflow!r}", param_hint="--record"
        )


def _run(settings, registry, documents, input_data, *, recover: bool, recording: "_Recording | None" = None):
    from flowker.audit.chain import Actor
    from flowker.catalog.spec_sync import install_for_run
    from flowker.runtime import Runtime
    from flowker.storage.migrations import upgrade

    runtime = Runtime.from_settings(settings, registry=registry)
    database = runtime.database
    try:
        upgrade(database)
        with database.connection_context():
            actor = Actor("user", f"cli:{_user()}", "127.0.0.1")
            service = runtime.execution_service
            if recover:
                recovered = service.recover_interrupted()
                if recovered:
                    from flowker.storage.database import database_label

                    # Runs queued again wait for a worker (`flowker worker` or `flowker serve`).
                    where = database_label(settings.database_url)
                    click.echo(f"interrupted execution(s) in {where}: {recovered.describe()}", err=True)
            workflow = install_for_run(settings, registry, documents, actor, runtime=runtime)
            if recording is not None:
                recording.attach(service)
            started_at = time.monotonic()
            started = service.start(workflow.id, input_data, actor=actor)
            plan = service.plan(workflow.id, workflow.version)
            click.echo(
                f"execution {started.execution.id} of {workflow.name} v{workflow.version}: {plan.total_steps} steps",
                err=True,
            )
            printer = ProgressPrinter(plan.total_steps)
            observer = printer if recording is None else recording.observer(printer)
            execution = service.run(started.execution.id, observer=observer)
            # With traces on (OTEL_*, docs/tracing.md), the trace to look the run up by.
            traced = f"; trace id {execution.trace_id}" if execution.trace_id else ""
            click.echo(
                f"execution {execution.status} in {(time.monotonic() - started_at) * 1000:.0f} ms{traced}", err=True
            )
            return execution
    finally:
        runtime.close()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
