"""``flowker init DIR``: the files of a new spec repository (a building block; no layer).

One workflow with its executor and a WorkflowTest whose cases take every branch, a
pre-commit config running ``flowker validate`` and ``flowker test``, and a README stub.
"""

from __future__ import annotations

from pathlib import Path

WORKFLOW = """\
kind: Workflow
name: greet-customer
description: Look up a customer and greet VIP customers differently
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}

  - id: lookup
    type: executor
    name: Look up the customer
    data:
      executor: crm
      endpoint: get-customer
      pathParams:
        customerId: ${{ workflow.customerId }}

  - id: is-vip
    type: conditional
    data:
      condition: nodes.lookup.body.tier == "VIP"

  - id: vip
    type: action
    data:
      actionType: set_output
      output:
        greeting: "Welcome back, ${{ nodes.lookup.body.name }}! Your concierge is waiting."

  - id: regular
    type: action
    data:
      actionType: set_output
      output:
        greeting: "Hello, ${{ nodes.lookup.body.name }}."

edges:
  - {source: start, target: lookup}
  - {source: lookup, target: is-vip}
  - {source: is-vip, target: vip, sourceHandle: "true"}
  - {source: is-vip, target: regular, sourceHandle: "false"}
"""

EXECUTOR = """\
kind: Executor
name: crm
description: The customer registry
baseUrl: https://crm.example.com
endpoints:
  - {name: get-customer, path: "/v1/customers/{customerId}", method: GET, timeout: 10}
authentication:
  type: bearer
  config:
    token: {$env: CRM_API_TOKEN}      # a reference: secrets never go in git
"""

TEST = """\
kind: WorkflowTest
workflow: greet-customer
secrets:
  CRM_API_TOKEN: test-crm-token       # what {$env: CRM_API_TOKEN} is under test
cases:
  - name: a VIP customer gets the concierge greeting
    input: {customerId: c-1}
    fixtures:
      - call: crm.get-customer
        match:
          pathParams: {customerId: c-1}
          headers: {Authorization: Bearer test-crm-token}
        respond: {status: 200, body: {name: Ada, tier: VIP}}
    expect:
      status: completed
      output: {greeting: "Welcome back, Ada! Your concierge is waiting."}
      steps: {vip: completed, regular: skipped}

  - name: a regular customer is greeted after the CRM recovers
    input: {customerId: c-2}
    fixtures:
      - call: crm.get-customer
        respond:                      # successive attempts: retried on 503
          - {status: 503}
          - {status: 200, body: {name: Bob, tier: STANDARD}}
    expect:
      output: {greeting: "Hello, Bob."}
      steps: {lookup: {status: completed, attempts: 2}, vip: skipped}
      calls: {crm.get-customer: 2}

  - name: an unknown customer fails the run
    input: {customerId: nobody}
    fixtures:
      - call: crm.get-customer
        respond: {status: 404, body: {error: not found}}
    expect:
      status: failed
      error: answered HTTP 404
"""

PRE_COMMIT = """\
# pre-commit (https://pre-commit.com): `pre-commit install` once, then every commit
# checks the specs and runs the workflow tests. These hooks use the flowker command on
# your PATH; to pin a version instead, point `repo:` at Flowker's git repository and
# keep the two hook ids (its .pre-commit-hooks.yaml defines them).
repos:
  - repo: local
    hooks:
      - id: flowker-validate
        name: flowker validate
        entry: flowker validate
        language: system
        files: ^(workflows|executors)/.+\\.ya?ml$
        require_serial: true
      - id: flowker-test
        name: flowker test
        entry: flowker test
        language: system
        files: ^(workflows|executors|tests)/.+\\.ya?ml$
        require_serial: true
"""

README = """\
# {name}

Flowker workflows, kept in git.

| folder | holds |
|---|---|
| `workflows/` | `kind: Workflow` specs |
| `executors/` | `kind: Executor` specs (secrets are `{{$env: NAME}}` references) |
| `tests/` | `kind: WorkflowTest` cases, run offline against fixtures |

```bash
flowker validate .          # schema, expressions, graph, references
flowker test .              # every test case, offline; --coverage lists untaken branches
pre-commit install          # both on every commit (.pre-commit-config.yaml)
```

In CI, run the same two commands; `flowker test . --junit test-results.xml` writes a
report CI systems display.
"""


def scaffold_files(name: str) -> dict[str, str]:
    """Relative path -> text of every file ``flowker init`` writes."""
    return {
        "workflows/greet-customer.yaml": WORKFLOW,
        "executors/crm.yaml": EXECUTOR,
        "tests/greet-customer.test.yaml": TEST,
        ".pre-commit-config.yaml": PRE_COMMIT,
        "README.md": README.format(name=name),
    }


def existing(root: Path, files: dict[str, str]) -> list[str]:
    return [relative for relative in files if (root / relative).exists()]


def write_scaffold(root: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
