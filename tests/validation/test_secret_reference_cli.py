"""``flowker validate`` and ``flowker run`` hold secret references to the server's rules
(DESIGN §6), with the same settings and defaults, so a spec that passes locally is not
refused by the server: real subprocesses, problems at ``file:line:column``, and for
``run`` a recording stub on 127.0.0.1 that receives nothing when a reference is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import run_flowker as flowker

from flowker.local_server import LocalHTTPServer

REPO = Path(__file__).resolve().parents[2]

EXECUTOR = """kind: Executor
name: partner
baseUrl: {url}
endpoints:
  - {{name: grab, path: /grab, method: GET, timeout: 5}}
authentication:
  type: api_key
  config:
    location: query
    key: {key}
"""

WORKFLOW = """kind: Workflow
name: grab
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}
  - id: grab
    type: executor
    data: {executor: partner, endpoint: grab}
  - id: out
    type: action
    data:
      actionType: set_output
      output: {ok: "${{ nodes.grab.body.ok }}"}
edges:
  - {source: start, target: grab}
  - {source: grab, target: out}
"""


@pytest.fixture
def stub():
    server = LocalHTTPServer(lambda request: (200, {}, {"ok": True}))
    with server:
        yield server


@pytest.fixture
def project(tmp_path):
    """project/{workflows,executors}, an allowed secrets folder, a file outside it."""
    root = tmp_path / "project"
    (root / "workflows").mkdir(parents=True)
    (root / "executors").mkdir()
    (root / "workflows" / "grab.yaml").write_text(WORKFLOW)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "partner-key").write_text("allowed-partner-key-123456\n")
    (tmp_path / "outside").write_text("cnsecretref-outside-canary\n")
    (secrets_dir / "escape").symlink_to(tmp_path / "outside")
    return root


def write_executor(project: Path, url: str, key: str) -> None:
    (project / "executors" / "partner.yaml").write_text(EXECUTOR.format(url=url, key=key))


# reference text in the YAML -> the rule the problem states
REFUSED = {
    "{$file: /etc/passwd}": "$file /etc/passwd must lie under FLOWKER_SECRET_FILE_DIRS ({dirs})",
    "{$file: SECRETS/escape}": "$file SECRETS/escape must lie under FLOWKER_SECRET_FILE_DIRS ({dirs})",
    "{$file: SECRETS/../outside}": "$file SECRETS/../outside must lie under FLOWKER_SECRET_FILE_DIRS ({dirs})",
    "{$file: /proc/self/environ}": "$file /proc/self/environ must lie under FLOWKER_SECRET_FILE_DIRS ({dirs})",
    "{$file: SECRETS}": "$file SECRETS is not a regular file",
    "{$env: FLOWKER_API_KEYS}": "environment variable FLOWKER_API_KEYS is Flowker's own setting and cannot be a secret reference",
    "{$env: HOME}": "$env HOME is not allowed by FLOWKER_SECRET_ENV_ALLOW (PARTNER_*)",
}


@pytest.mark.parametrize("reference", sorted(REFUSED))
def test_validate_refuses_what_the_server_would_at_file_line_column(project, stub, reference):
    secrets_dir = str(project.parent / "secrets")
    write_executor(project, stub.url, reference.replace("SECRETS", secrets_dir))
    result = flowker(
        "validate",
        "executors/partner.yaml",
        cwd=project,
        FLOWKER_SECRET_FILE_DIRS=secrets_dir,
        FLOWKER_SECRET_ENV_ALLOW="PARTNER_*",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    rule = REFUSED[reference].replace("SECRETS", secrets_dir).format(dirs=secrets_dir)
    kind = "$file" if "$file" in reference else "$env"
    # `    key: {$file: X}`: line 10, the reference's value after "key: {$file: " (column 5 + 6 + 2 + len(kind)).
    assert result.stdout.splitlines() == [
        f"executors/partner.yaml:10:{5 + len('key: {') + len(kind) + 2}: {rule} (at $.authentication.config.key.{kind})"
    ]
    assert "cnsecretref" not in result.stdout + result.stderr


def test_validate_uses_the_servers_defaults(project, stub):
    """No settings: files only under /run/secrets, any $env but FLOWKER_* (development)."""
    write_executor(project, stub.url, "{$file: /etc/passwd}")
    refused = flowker("validate", "executors/partner.yaml", cwd=project)
    assert refused.returncode == 1
    assert "$file /etc/passwd must lie under FLOWKER_SECRET_FILE_DIRS (/run/secrets)" in refused.stdout
    write_executor(project, stub.url, "{$env: PARTNER_KEY}")
    assert flowker("validate", "executors/partner.yaml", cwd=project).returncode == 0
    write_executor(project, stub.url, "{$file: /run/secrets/partner-key}")  # may be mounted later
    assert flowker("validate", "executors/partner.yaml", cwd=project).returncode == 0


def test_run_refuses_before_anything_is_sent_and_runs_an_allowed_reference(project, stub):
    secrets_dir = str(project.parent / "secrets")
    settings = {"FLOWKER_SECRET_FILE_DIRS": secrets_dir}
    write_executor(project, stub.url, f"{{$file: {secrets_dir}/escape}}")
    refused = flowker("run", "workflows/grab.yaml", cwd=project, **settings)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        f"{project}/executors/partner.yaml:10:18: $file {secrets_dir}/escape must lie under FLOWKER_SECRET_FILE_DIRS "
        f"({secrets_dir}) (at $.authentication.config.key.$file)"
    ) in refused.stderr
    assert "nothing was run" in refused.stderr
    assert stub.requests == [] and "cnsecretref" not in refused.stdout + refused.stderr
    write_executor(project, stub.url, f"{{$file: {secrets_dir}/partner-key}}")
    allowed = flowker("run", "workflows/grab.yaml", cwd=project, **settings)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert [request.query_string for request in stub.requests] == ["api_key=allowed-partner-key-123456"]


def test_apply_to_a_local_database_refuses_the_same_references(project, stub, tmp_path):
    secrets_dir = str(project.parent / "secrets")
    write_executor(project, stub.url, "{$env: HOME}")
    database = f"sqlite:///{tmp_path}/apply.db"
    refused = flowker(
        "apply",
        ".",
        "--db",
        database,
        cwd=project,
        FLOWKER_SECRET_FILE_DIRS=secrets_dir,
        FLOWKER_SECRET_ENV_ALLOW="PARTNER_*",
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        "executors/partner.yaml:10:17: $env HOME is not allowed by FLOWKER_SECRET_ENV_ALLOW (PARTNER_*) "
        "(at $.authentication.config.key.$env)"
    ) in refused.stderr
    assert "nothing applied" in refused.stderr
