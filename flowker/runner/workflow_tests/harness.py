"""Running WorkflowTest cases: the real engine on fixtures and virtual time.

:class:`TestSuite` holds the documents given to ``flowker test`` (workflows, executors,
test files). Each case gets a fresh :class:`~flowker.runner.clock.VirtualClock`, fresh
breakers, executor clients whose sessions answer from the case's fixtures
(:class:`~flowker.runner.workflow_tests.transport.FixtureTransport`), a fresh OIDC token
cache, and the engine with no storage behind it. Secret references in executors resolve
to the test file's ``secrets`` (else ``test-secret:<name>``): real secrets are never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flowker.auth.base import AuthContext, AuthenticationSpec
from flowker.auth.resolution import AuthResolution
from flowker.auth.token_cache import TokenCache
from flowker.error_codes import ErrorCode
from flowker.errors import FlowkerError, InputValidationError, SpecError, UnprocessableEntity
from flowker.runner.breakers import ExecutorBreaker
from flowker.runner.clock import VirtualClock
from flowker.runner.engine import COMPLETED, FAILED, Engine, RunOutcome
from flowker.runner.executor_client import ExecutorClient, ExecutorDefinition, RetryPolicy
from flowker.runner.graph import WorkflowPlan, compile_plan
from flowker.runner.workflow_tests.cases import TestCase, TestFile, read_test_file, split_call
from flowker.runner.workflow_tests.matching import mismatches
from flowker.runner.workflow_tests.transport import FixtureTransport, SentRequest, endpoint_routes
from flowker.security.redaction import Redactor
from flowker.validation.documents import ExecutorSpec, WorkflowSpec, WorkflowTestSpec

TEST_SECRET_PREFIX = "test-secret:"
logger = logging.getLogger(__name__)


@dataclass
class CaseResult:
    source: str  # the test file
    workflow: str
    name: str
    location: str
    failures: list = field(default_factory=list)
    duration_ms: float = 0.0
    outcome: RunOutcome | None = None
    branches: dict = field(default_factory=dict)  # conditional node id -> result
    edges: set = field(default_factory=set)  # indexes of the edges taken
    requests: list = field(default_factory=list)  # SentRequest, in order
    virtual_seconds: float = 0.0  # time the waits took on the virtual clock

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class _PreparedExecutor:
    definition: ExecutorDefinition
    auth_type: Any
    resolved: Any
    credential_headers: tuple
    routes: list


class _NoSink:
    def step_started(self, node) -> None:
        pass

    def step_finished(self, record) -> None:
        pass


class TestSuite:
    """Workflows, executors and test files given together; runs the test files' cases."""

    def __init__(self, settings, registry, documents: list):
        self.settings = settings
        self.registry = registry
        self.workflows = {d.name: d for d in documents if isinstance(d, WorkflowSpec)}
        self.executors = {d.name: d for d in documents if isinstance(d, ExecutorSpec)}
        self.test_files = [d for d in documents if isinstance(d, WorkflowTestSpec)]
        self.endpoints = {name: spec.endpoint_names for name, spec in self.executors.items()}
        self.plans: dict[str, WorkflowPlan] = {}
        self.redactor = Redactor()
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.auth_resolution = AuthResolution(settings, registry, self.redactor, secret_box=lambda: None)
        self._prepared: dict[tuple, _PreparedExecutor] = {}

    def plan(self, workflow: str) -> WorkflowPlan:
        plan = self.plans.get(workflow)
        if plan is None:
            spec = self.workflows[workflow]
            plan = self.plans[workflow] = compile_plan(spec.body, self.registry, workflow_id=workflow, version=1)
        return plan

    def prepared_executor(self, reference: str, secrets: dict) -> "_PreparedExecutor":
        """What every case of a test file needs of an executor, built and checked once:
        its definition with the test secrets, the resolved and validated auth config, the
        URL patterns of its endpoints."""
        key = (reference, json.dumps(secrets, sort_keys=True))
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        spec = self.executors.get(reference)
        if spec is None:
            raise UnprocessableEntity(
                f"executor {reference!r} is not among the files given", code=ErrorCode.EXECUTOR_REFERENCE_UNKNOWN
            )
        body = spec.body
        authentication = AuthenticationSpec.from_spec(with_test_secrets(body.get("authentication"), secrets))
        endpoints = {e["name"]: e for e in spec.endpoints if isinstance(e, dict) and "name" in e}
        definition = ExecutorDefinition(
            spec.name, spec.name, 1, str(body.get("baseUrl", "")), endpoints, authentication
        )
        auth_type, resolved = self.auth_resolution.resolve(authentication)
        self.auth_resolution.validate(auth_type, resolved)
        declared = tuple(auth_type.credential_headers(resolved)) if isinstance(resolved, dict) else ()
        for name in declared:
            self.redactor.add_secret_header(name)
        prepared = self._prepared[key] = _PreparedExecutor(
            definition, auth_type, resolved, declared, endpoint_routes(definition)
        )
        return prepared

    def run_file(self, document: WorkflowTestSpec) -> list[CaseResult]:
        test_file = read_test_file(document)
        problem = None
        if test_file.workflow not in self.workflows:
            problem = (
                f"workflow {test_file.workflow!r} is not among the files given "
                "(give its folder too, e.g. flowker test workflows/ executors/ tests/)"
            )
        else:
            try:
                self.plan(test_file.workflow)
            except SpecError as exc:
                problem = "the workflow cannot run: " + "; ".join(p.message for p in exc.problems)
        results = []
        for case in test_file.cases:
            if problem is not None:
                results.append(CaseResult(test_file.source, test_file.workflow, case.name, case.location, [problem]))
                continue
            try:
                results.append(self.run_case(test_file, case))
            except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others' results
                logger.exception("case %r of %s stopped", case.name, test_file.source)
                failure = f"internal error: {type(exc).__name__}: {self.redactor.scrub_text(str(exc))}"
                results.append(CaseResult(test_file.source, test_file.workflow, case.name, case.location, [failure]))
        return results

    def run_case(self, test_file: TestFile, case: TestCase) -> CaseResult:
        started = time.perf_counter()
        result = CaseResult(test_file.source, test_file.workflow, case.name, case.location)
        fixtures = case.fresh_fixtures()
        calls = {}
        for fixture in fixtures:
            target = split_call(fixture.call, self.endpoints)
            if target is None:
                result.failures.append(
                    f"fixture {fixture.label}: no executor endpoint {fixture.call!r} among the files given"
                )
            else:
                calls[fixture.call] = target
        for call in (case.expect.get("calls") or {}).keys():
            if split_call(call, self.endpoints) is None:
                result.failures.append(f"expect.calls: no executor endpoint {call!r} among the files given")
        if result.failures:
            return result
        clock = VirtualClock()
        transport = FixtureTransport(fixtures, calls, clock)
        executors = _CaseExecutors(self, test_file.secrets, transport, clock)
        plan = self.plan(test_file.workflow)
        timeout = self.settings.execution_timeout_seconds
        engine = Engine(
            plan,
            execution_id=case_execution_id(test_file.workflow, case.name),
            input_data=case.input,
            deadline=clock.monotonic() + timeout,
            timeout_seconds=timeout,
            resolve_executor=executors.resolve,
            sink=_NoSink(),
            scrub_text=self.redactor.scrub_text,
            expression_cpu_seconds=self.settings.expression_cpu_seconds,
            max_output_bytes=self.settings.max_output_bytes,
            monotonic=clock.monotonic,
        )
        refusal = refused_input(plan, case.input)
        try:
            outcome = refusal if refusal is not None else engine.run()
        finally:
            executors.close()
        result.outcome = outcome
        result.branches = dict(engine.branch)
        result.edges = {edge.index for edge in engine.edges_taken}
        result.requests = transport.requests
        result.virtual_seconds = clock.offset
        result.failures.extend(f"unmatched call: {message}" for message in transport.unmatched)
        expectations = check_expectations(case.expect, outcome, plan, transport)
        if transport.unmatched:  # the unmatched call is why the run failed: say it once
            expectations = [failure for failure in expectations if not failure.startswith("status:")]
        result.failures.extend(expectations)
        result.duration_ms = (time.perf_counter() - started) * 1000.0
        return result


class _CaseExecutors:
    """The engine's ``resolve_executor`` for one case: a client (fixture session, fresh
    breaker on the case's clock) and the real auth, per executor, built on first use."""

    def __init__(self, suite: TestSuite, secrets: dict, transport: FixtureTransport, clock: VirtualClock):
        self.suite = suite
        self.secrets = secrets
        self.transport = transport
        self.clock = clock
        self.token_cache = TokenCache()
        self.built: dict[str, tuple[ExecutorClient, Any]] = {}

    def resolve(self, reference: str) -> tuple[ExecutorClient, Any]:
        built = self.built.get(reference)
        if built is None:
            built = self.built[reference] = self._build(reference)
        return built

    def _build(self, reference: str) -> tuple[ExecutorClient, Any]:
        suite, settings = self.suite, self.suite.settings
        prepared = suite.prepared_executor(reference, self.secrets)
        breaker = ExecutorBreaker(
            prepared.definition.name,
            settings.cb_failure_threshold,
            settings.cb_recovery_seconds,
            settings.cb_half_open_calls,
            clock=self.clock,
        )
        client = ExecutorClient(
            prepared.definition,
            self.transport.session_for(prepared.definition, prepared.routes, prepared.credential_headers),
            breaker,
            suite.retry_policy,
            redact_url=suite.redactor.redact_url,
            scrub_text=suite.redactor.scrub_text,
            clock=self.clock,
        )
        try:
            # A new auth per case (an OIDC one holds its token cache); checked once per suite.
            auth = prepared.auth_type.build(prepared.resolved, self._auth_context())
        except FlowkerError:
            client.close()
            raise
        return client, auth

    def _auth_context(self) -> AuthContext:
        redactor = self.suite.redactor
        return AuthContext(
            settings=self.suite.settings,
            new_session=self.transport.token_session,
            register_secret=redactor.add_secret,
            token_cache=self.token_cache,
            redactor=redactor,
        )

    def close(self) -> None:
        for client, _auth in self.built.values():
            client.close()


def with_test_secrets(value: Any, secrets: dict) -> Any:
    """``value`` with every ``{$env: NAME}``/``{$file: PATH}`` replaced by the test value."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, name),) = value.items()
            if key in ("$env", "$file") and isinstance(name, str):
                return secrets.get(name, TEST_SECRET_PREFIX + name)
        return {key: with_test_secrets(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [with_test_secrets(item, secrets) for item in value]
    return value


def refused_input(plan: WorkflowPlan, input_data: Any) -> RunOutcome | None:
    """The outcome of an input the trigger's ``inputSchema`` refuses, as the server would
    refuse it (422 ``FLK-0511``, nothing run); None when the input is accepted."""
    if plan.input_validator is None:
        return None
    problems = plan.input_validator.problems(input_data)
    if not problems:
        return None
    refusal = InputValidationError(problems)
    return RunOutcome(status=FAILED, error_message=f"{refusal.code}: {refusal.message}")


def check_expectations(expect: dict, outcome: RunOutcome, plan: WorkflowPlan, transport: FixtureTransport) -> list:
    failures = []
    wanted = expect.get("status") or (FAILED if "error" in expect else COMPLETED)
    if outcome.status != wanted:
        why = f" ({outcome.error_message})" if outcome.error_message else ""
        failures.append(f"status: expected {wanted}, got {outcome.status}{why}")
    if "error" in expect:
        text = str(expect["error"])
        failed = [step for step in outcome.steps if step.status == FAILED]
        codes = {step.error_code for step in failed}
        if text not in codes and text not in (outcome.error_message or ""):
            got = f"{failed[0].error_code}: {outcome.error_message}" if failed else outcome.error_message or "no error"
            failures.append(f"error: expected {text!r}, got {got}")
    if "output" in expect and outcome.status == COMPLETED:  # a failed run has no output: status said so
        failures.extend(mismatches(expect["output"], outcome.final_output, "output"))
    by_id = {step.node.id: step for step in outcome.steps}
    for node_id, wanted_step in (expect.get("steps") or {}).items():
        step = by_id.get(node_id)
        if step is None:
            failures.append(f"steps.{node_id}: workflow {plan.name!r} has no node {node_id!r}")
            continue
        spec = wanted_step if isinstance(wanted_step, dict) else {"status": wanted_step}
        if "status" in spec and step.status != spec["status"]:
            error = f" ({step.error})" if step.error else ""
            failures.append(f"steps.{node_id}: expected {spec['status']}, got {step.status}{error}")
        if "attempts" in spec and step.attempts != spec["attempts"]:
            failures.append(f"steps.{node_id}.attempts: expected {spec['attempts']}, got {step.attempts}")
    for call, count in (expect.get("calls") or {}).items():
        sent = transport.count(call)
        if sent != count:
            failures.append(f"calls.{call}: expected {count} request(s), got {sent}")
    return failures


def describe_requests(requests: list[SentRequest]) -> list[str]:
    """One line per request a case sent (for failure details)."""
    lines = []
    for sent in requests:
        answer = sent.failure or (f"HTTP {sent.answer.get('status', 200)}" if sent.answer else "unmatched")
        lines.append(f"{sent.method} {sent.url} -> {answer}" + (f" by fixture {sent.fixture}" if sent.fixture else ""))
    return lines


def case_execution_id(workflow: str, case: str) -> str:
    """The same id on every run of a case (it prefixes the Idempotency-Key a fixture may match)."""
    return "test-" + hashlib.sha256(f"{workflow}\n{case}".encode()).hexdigest()[:16]
