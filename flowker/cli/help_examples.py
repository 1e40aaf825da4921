"""Examples shown at the end of each command's ``--help``, kept in one place.

:class:`flowker.cli.common.WholeHelpGroup` attaches them when a command is looked up,
so the command modules stay about what the commands do.
"""

from __future__ import annotations

# "group command" or "command" -> example lines (click keeps a \b paragraph as written).
EXAMPLES: dict[str, str] = {
    "validate": """
flowker validate examples/                        # every *.yaml below, recursively
flowker validate --executors shared/executors workflows/payment.yaml
flowker validate -q specs/ && echo valid          # exit 0 valid, 1 problems, 2 usage
flowker validate --verbose workflows/              # also each schedule's next 3 fire times
""",
    "run": """
flowker run examples/payment-approval/workflows/payment-approval.yaml \\
  --input '{"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "alice"}'
flowker run workflows/nightly.yaml --input @input.json --executors executors/
flowker run workflows/nightly.yaml --input @- --db flowker-data/flowker.db < input.json
""",
    "schema": """
flowker schema --out .flowker/schemas             # then: docs/editors.md
""",
    "test": """
flowker test examples/                            # every WorkflowTest below, with its workflows
flowker test tests/payment.test.yaml --coverage   # workflows/ and executors/ beside tests/ are read
flowker test . --junit test-results.xml           # exit 0 all passed, 1 any failed, 2 usage
""",
    "init": """
flowker init my-workflows && cd my-workflows && flowker validate . && flowker test .
""",
    "serve": """
flowker serve                                     # 127.0.0.1:8000, ./flowker.db
flowker serve --bind 0.0.0.0:8080 --specs examples/ --db flowker-data/flowker.db
FLOWKER_DATABASE_URL=postgresql://flowker@db/flowker flowker serve --workers 4
FLOWKER_LOG_FORMAT=json flowker serve --metrics-bind 10.0.0.5:9464  # JSON logs; keyless metrics there
flowker serve --no-worker                         # queued runs are left to `flowker worker` processes
""",
    "worker": """
flowker worker --db flowker-data/flowker.db       # runs what `Prefer: respond-async` and async webhooks queue
FLOWKER_DATABASE_URL=postgresql://flowker@db/flowker flowker worker --concurrency 8
flowker worker --metrics-bind 10.0.0.5:9465 --grace-seconds 60
""",
    "apply": """
flowker apply examples/ --dry-run                 # print the plan; writes nothing
flowker apply examples/ --activate --db flowker-data/flowker.db
flowker apply examples/ --server http://127.0.0.1:8000 --api-key "$KEY"
""",
    "plugins": """
flowker plugins
flowker plugins --json | jq '.authTypes'
""",
    "audit verify": """
flowker audit verify --db flowker-data/flowker.db
flowker audit verify --json --public-key auditor.pub
flowker audit verify --file audit.jsonl --public-key auditor.pub   # offline, no database
""",
    "audit export": """
flowker audit export --out audit.jsonl --db flowker-data/flowker.db
""",
    "audit checkpoint": """
FLOWKER_AUDIT_SIGNING_KEY=audit-signing.pem flowker audit checkpoint
""",
    "audit keygen": """
flowker audit keygen --out audit-signing.pem --public-out auditor.pub
""",
    "audit public-key": """
FLOWKER_AUDIT_SIGNING_KEY=audit-signing.pem flowker audit public-key > auditor.pub
""",
    "db upgrade": """
flowker db upgrade --db flowker-data/flowker.db
FLOWKER_DATABASE_URL=postgresql://flowker@db/flowker flowker db upgrade
""",
    "keys create": """
flowker keys create --name ci-deploy --role operator --expires 90d --db flowker-data/flowker.db
flowker keys create --name payments-ci --role operator --workflows payment-approval --json | jq -r .key
flowker keys create --name compliance --role auditor --expires 2027-01-01T00:00:00Z
""",
    "keys list": """
flowker keys list --db flowker-data/flowker.db
flowker keys list --json | jq '.[] | select(.status == "active") | .name'
""",
    "keys revoke": """
flowker keys revoke ci-deploy --db flowker-data/flowker.db
""",
    "secrets rotate": """
FLOWKER_SECRET_KEY="$NEW_KEY,$OLD_KEY" flowker secrets rotate --db flowker-data/flowker.db
""",
}


def epilog_for(path: str) -> str | None:
    lines = EXAMPLES.get(path)
    if lines is None:
        return None
    body = "\n".join("  " + line if line else line for line in lines.strip("\n").splitlines())
    return "\b\nExamples:\n" + body
