"""The plugin guide's end-to-end recipe (plugins/README.md, section 4), taken from the guide
itself: its stub, executor and workflow validate, and `flowker run` sends the hmac plugin's
signed headers to the stub, which verifies them."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from flowker.cli import cli

GUIDE = Path(__file__).resolve().parents[2] / "plugins" / "README.md"
SECRET = "dev-partner-secret-0123456789"


def _recipe_files(port: int) -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## 4. End to end") : text.index("## 5.")]
    stub = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    executor, workflow = re.findall(r"```yaml\n(.*?)```", section, re.S)[:2]
    files = {"partner_stub.py": stub, "executors/partner.yaml": executor, "workflows/partner-order.yaml": workflow}
    # The guide's fixed port, moved to a free one so parallel runs do not collide.
    return {name: body.replace("8701", str(port)) for name, body in files.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the guide's stub did not listen on {port}")


def test_the_guides_recipe_validates_runs_and_the_stub_sees_the_plugins_headers(tmp_path, monkeypatch):
    port = _free_port()
    for name, body in _recipe_files(port).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    monkeypatch.setenv("PARTNER_HMAC_SECRET", SECRET)
    validated = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert validated.exit_code == 0, validated.output

    stub = subprocess.Popen(
        [sys.executable, str(tmp_path / "partner_stub.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PARTNER_HMAC_SECRET": SECRET, "PYTHONPATH": ":".join(sys.path)},
    )
    try:
        _wait_for(port, stub)
        result = CliRunner().invoke(
            cli,
            ["run", str(tmp_path / "workflows" / "partner-order.yaml"), "--input", '{"orderId": "o-1", "quantity": 3}'],
        )
    finally:
        stub.terminate()
        printed = stub.communicate(timeout=10)[0]
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"signatureValid": True, "keyId": "partner-1"}
    assert "POST /v1/orders" in printed
    for header in ("X-Key-Id: partner-1", "X-Timestamp: ", "X-Signature: "):
        assert header in printed, printed
