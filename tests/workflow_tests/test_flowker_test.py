"""`flowker test`: WorkflowTest files run offline (DESIGN 12).

Every run here goes through the real command line in this process with a socket guard
on: a connect, create_connection or DNS lookup anywhere fails the test.
"""

from __future__ import annotations

import time
from pathlib import Path

import junitparser
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_WORKFLOWS = ("payment-approval", "customer-onboarding", "order-fulfilment", "nightly-settlement")

EXECUTOR = """\
    kind: Executor
    name: ledger
    baseUrl: https://ledger.example.com
    endpoints:
      - {name: book, path: "/v1/accounts/{account}/bookings", method: POST}
    authentication:
      type: bearer
      config: {token: {$env: LEDGER_TOKEN}}
"""

WORKFLOW = """\
    kind: Workflow
    name: book-payment
    nodes:
      - {id: start, type: trigger, data: {triggerType: manual}}
      - id: book
        type: executor
        data:
          executor: ledger
          endpoint: book
          pathParams: {account: "${{ workflow.account }}"}
          query: {dryRun: false}
          body: {amount: "${{ workflow.amount }}"}
      - {id: big, type: conditional, data: {condition: "workflow.amount >= 1000"}}
      - {id: review, type: action, data: {actionType: set_output, output: {decision: REVIEW}}}
      - {id: done, type: action, data: {actionType: set_output, output: {decision: BOOKED, id: "${{ nodes.book.body.id }}"}}}
    edges:
      - {source: start, target: book}
      - {source: book, target: big}
      - {source: big, target: review, sourceHandle: "true"}
      - {source: big, target: done, sourceHandle: "false"}
"""


def _specs(spec_folder, test_text: str) -> Path:
    return spec_folder(
        {"workflows/book.yaml": WORKFLOW, "executors/ledger.yaml": EXECUTOR, "tests/book.test.yaml": test_text}
    )


def test_the_examples_pass_offline_cover_every_branch_and_write_junit(flowker_cli, socket_guard, tmp_path):
    junit = tmp_path / "results.xml"
    code, out, err = flowker_cli("test", EXAMPLES, "--coverage", "--junit", junit)
    assert code == 0, out + err
    assert socket_guard == []
    assert "12 cases: 12 passed, 0 failed (4 test files" in out
    for workflow in EXAMPLE_WORKFLOWS:
        assert f"coverage {workflow}: " in out
    assert "never taken" not in out  # every branch and edge of every example is taken

    xml = junitparser.JUnitXml.fromfile(str(junit))
    suites = list(xml)
    assert len(suites) == 4
    cases = [case for suite in suites for case in suite]
    assert len(cases) == 12
    assert all(case.is_passed for case in cases)
    assert {case.classname for case in cases} == set(EXAMPLE_WORKFLOWS)


def test_retry_waits_run_on_virtual_time(flowker_cli, socket_guard, spec_folder):
    """[503, 503, 200] with the default 1 s base wait: three attempts, no real second."""
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: the ledger recovers
            input: {account: acc-1, amount: 10}
            fixtures:
              - call: ledger.book
                respond: [{status: 503}, {status: 503}, {status: 200, body: {id: b-1}}]
            expect:
              output: {decision: BOOKED, id: b-1}
              steps: {book: {status: completed, attempts: 3}, review: skipped}
              calls: {ledger.book: 3}
        """,
    )
    started = time.monotonic()
    code, out, err = flowker_cli("test", folder)
    assert code == 0, out + err
    assert time.monotonic() - started < 1.0  # the waits (1 s + 2 s) were virtual
    assert socket_guard == []


def test_the_virtual_clock_advances_by_the_real_waits(socket_guard, spec_folder):
    from flowker.plugins import load_registry
    from flowker.settings import Settings
    from flowker.runner.workflow_tests.harness import TestSuite
    from flowker.validation.loader import find_spec_files, load_spec_file

    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: three attempts
            input: {account: a, amount: 1}
            fixtures:
              - {call: ledger.book, respond: [{status: 503}, {status: 429, headers: {Retry-After: "7"}}, {body: {id: x}}]}
        """,
    )
    settings = Settings()
    documents = [load_spec_file(path) for path in find_spec_files(folder)]
    suite = TestSuite(settings, load_registry(settings), documents)
    (result,) = suite.run_file(suite.test_files[0])
    assert result.passed, result.failures
    assert result.virtual_seconds == pytest.approx(1.0 + 7.0)  # base wait, then Retry-After
    assert result.duration_ms < 1000


def test_auth_headers_query_path_and_body_can_be_matched(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        secrets: {LEDGER_TOKEN: t0k}
        cases:
          - name: everything matches
            input: {account: "acc/1", amount: 1500}
            fixtures:
              - call: ledger.book
                match:
                  method: POST
                  headers: {authorization: Bearer t0k}
                  query: {dryRun: false}
                  pathParams: {account: acc/1}
                  body: {amount: 1500}
                respond: {body: {id: b-2}}
            expect:
              output: {decision: REVIEW}
              steps: {review: completed, done: skipped}
        """,
    )
    code, out, err = flowker_cli("test", folder / "tests")
    assert code == 0, out + err
    assert "1 case: 1 passed" in out


def test_an_unmatched_call_fails_naming_method_url_body_and_fixtures(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: wrong amount
            input: {account: acc-1, amount: 12}
            fixtures:
              - call: ledger.book
                match: {body: {amount: 10}}
                respond: {body: {id: b-1}}
        """,
    )
    code, out, _err = flowker_cli("test", folder)
    assert code == 1
    assert "FAIL  wrong amount" in out
    assert "unmatched call: no fixture answers POST https://ledger.example.com/v1/accounts/acc-1/bookings" in out
    assert 'body {"amount":12}' in out
    assert "fixtures tried: #1 (" in out and "book.test.yaml:7) ledger.book: body.amount: expected 10, got 12" in out
    assert "0 passed, 1 failed" in out


def test_failed_expectations_are_each_named(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: wrong on every count
            input: {account: a, amount: 5}
            fixtures:
              - {call: ledger.book, respond: {body: {id: b-9}}}
            expect:
              output: {decision: REVIEW}
              steps: {review: completed, book: {attempts: 2}, nope: skipped}
              calls: {ledger.book: 3}
        """,
    )
    code, out, _err = flowker_cli("test", folder)
    assert code == 1
    assert 'output.decision: expected "REVIEW", got "BOOKED"' in out
    assert "steps.review: expected completed, got skipped" in out
    assert "steps.book.attempts: expected 2, got 1" in out
    assert "steps.nope: workflow 'book-payment' has no node 'nope'" in out
    assert "calls.ledger.book: expected 3 request(s), got 1" in out


def test_timeouts_connection_errors_and_expected_failures(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: a timeout then an answer
            input: {account: a, amount: 5}
            fixtures:
              - {call: ledger.book, respond: [{raise: timeout}, {body: {id: b-1}}]}
            expect:
              steps: {book: {status: completed, attempts: 2}}
          - name: the connection always fails
            input: {account: a, amount: 5}
            fixtures:
              - {call: ledger.book, raise: connection_error}
            expect:
              status: failed
              error: FLK-0503
              steps: {book: {status: failed, attempts: 5}, big: skipped}
          - name: a 4xx is not retried
            input: {account: a, amount: 5}
            fixtures:
              - {call: ledger.book, respond: {status: 409, body: {error: duplicate}}}
            expect:
              error: answered HTTP 409
              steps: {book: {status: failed, attempts: 1}}
        """,
    )
    code, out, err = flowker_cli("test", folder)
    assert code == 0, out + err
    assert "3 cases: 3 passed" in out


def test_coverage_lists_the_branches_and_edges_no_case_took(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: small only
            input: {account: a, amount: 5}
            fixtures: [{call: ledger.book, respond: {body: {id: b}}}]
        """,
    )
    code, out, _err = flowker_cli("test", folder, "--coverage")
    assert code == 0
    assert "coverage book-payment: 4/6 branches and edges taken" in out
    assert "  branch big = true never taken" in out
    assert "  edge big -> review [true] never taken" in out
    assert "big = false" not in out


def test_the_oidc_token_comes_from_the_built_in_fake(flowker_cli, socket_guard, spec_folder):
    folder = spec_folder(
        {
            "workflows/w.yaml": """\
                kind: Workflow
                name: oidc-call
                nodes:
                  - {id: start, type: trigger, data: {triggerType: manual}}
                  - {id: call, type: executor, data: {executor: kyc, endpoint: check}}
                edges: [{source: start, target: call}]
            """,
            "executors/kyc.yaml": """\
                kind: Executor
                name: kyc
                baseUrl: https://kyc.example.com
                endpoints: [{name: check, path: /check, method: GET}]
                authentication:
                  type: oidc_client_credentials
                  config:
                    issuer_url: https://id.example.com/realms/main
                    client_id: my-client
                    client_secret: {$env: KYC_SECRET}
            """,
            "tests/w.test.yaml": """\
                kind: WorkflowTest
                workflow: oidc-call
                cases:
                  - name: the bearer token is the fake one
                    fixtures:
                      - call: kyc.check
                        match: {headers: {Authorization: "Bearer fake-access-token:my-client"}}
                        respond: {body: {ok: true}}
            """,
        }
    )
    code, out, err = flowker_cli("test", folder)
    assert code == 0, out + err
    assert socket_guard == []


def test_an_invalid_test_file_is_reported_at_line_and_column(flowker_cli, socket_guard, spec_folder):
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases:
          - name: broken
            fixtures:
              - call: ledger
                respond: {status: 200}
                raise: timeout
            expect: {status: done}
        """,
    )
    code, _out, err = flowker_cli("test", folder)
    assert code == 1
    test_file = folder / "tests" / "book.test.yaml"
    assert f"{test_file}:6:9: needs exactly one of respond or raise" in err
    assert f"{test_file}:6:15: 'call' must be executor.endpoint" in err
    assert f"{test_file}:9:22: 'status' must be one of 'completed', 'failed'" in err
    assert "no case was run" in err


def test_flowker_validate_accepts_test_files_and_checks_them(flowker_cli, spec_folder):
    folder = _specs(spec_folder, "kind: WorkflowTest\nworkflow: book-payment\ncases: [{name: x, inputs: {}}]\n")
    code, out, _err = flowker_cli("validate", folder)
    assert code == 1
    assert f"{folder / 'tests' / 'book.test.yaml'}:3:19: unknown field 'inputs'" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("no/such/folder",), "no such file or folder"),
        ((EXAMPLES / "payment-approval" / "workflows" / "payment-approval.yaml", "--executors"), "No such option"),
    ],
)
def test_usage_errors_exit_2(flowker_cli, args, message):
    code, out, err = flowker_cli("test", *args)
    assert code == 2
    assert message in out + err


def test_no_test_file_is_a_usage_error(flowker_cli, spec_folder):
    folder = spec_folder({"workflows/book.yaml": WORKFLOW, "executors/ledger.yaml": EXECUTOR})
    code, _out, err = flowker_cli("test", folder)
    assert code == 2
    assert "no kind: WorkflowTest file" in err


def test_without_a_path_the_current_folder_is_tested(flowker_cli, socket_guard, spec_folder, monkeypatch):
    folder = _specs(
        spec_folder,
        """        kind: WorkflowTest
        workflow: book-payment
        cases: [{name: small, input: {account: a, amount: 1}, fixtures: [{call: ledger.book, respond: {body: {id: b}}}]}]
        """,
    )
    monkeypatch.chdir(folder)
    code, out, err = flowker_cli("test")
    assert code == 0, out + err
    assert "tests/book.test.yaml (book-payment)" in out


def test_a_test_of_a_workflow_not_given_fails_its_cases(flowker_cli, spec_folder):
    folder = spec_folder({"t.test.yaml": "kind: WorkflowTest\nworkflow: elsewhere\ncases: [{name: one}]\n"})
    code, out, _err = flowker_cli("test", folder)
    assert code == 1
    assert "workflow 'elsewhere' is not among the files given" in out


def test_other_yaml_beside_the_specs_is_skipped(flowker_cli, socket_guard, spec_folder):
    """A hook passes every changed YAML under tests/: a project's own fixtures are not specs."""
    folder = _specs(
        spec_folder,
        """\
        kind: WorkflowTest
        workflow: book-payment
        cases: [{name: small, input: {account: a, amount: 1}, fixtures: [{call: ledger.book, respond: {body: {id: b}}}]}]
        """,
    )
    (folder / "tests" / "fixture-data.yaml").write_text("users: [alice, bob]\n")
    code, out, err = flowker_cli("test", folder / "tests" / "fixture-data.yaml")
    assert code == 0, out + err
    assert "1 case: 1 passed" in out
