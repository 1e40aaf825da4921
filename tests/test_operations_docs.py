"""Every PromQL expression of the Grafana dashboard and of docs/operations.md uses only
metrics Flowker exports, and Prometheus's own ``promtool`` parses each of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = "/usr/bin/promtool"

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
# Label lists after these words are label names, not metrics.
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels, durations and
    strings left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def exported_names() -> set[str]:
    """What a Flowker exposition declares, with each histogram's series."""
    from flowker.observability.metrics import Metrics
    from flowker.settings import Settings

    metrics = Metrics.from_settings(Settings())
    metrics.execution_ended("w", "completed", 1.0)
    metrics.step_settled("w", "action", "completed")
    metrics.executor_attempt("e", "p", "success", 0.1)
    metrics.executor_retries("e", 1)
    metrics.breaker_state("e", "closed")
    metrics.http_request("GET", "/x", 200, 0.1)
    metrics.audit_appended()
    metrics.audit_verified(True)
    metrics.queue_depth(0)
    names = set()
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", metrics.exposition().decode(), re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return {name for name in names if not name.endswith("_created")}


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel["targets"]]


def docs_expressions() -> list[str]:
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", OPERATIONS.read_text(), re.DOTALL)]


def test_the_extractor_finds_metric_names_only():
    expression = 'sum by (le, route) (rate(x_bucket{route="/a{b}",status=~"5.."}[5m])) / on (route) y > bool 1'
    assert metric_names(expression) == {"x_bucket", "y"}
    assert metric_names("histogram_quantile(0.99, rate(nope_total[1h] offset 5m))") == {"nope_total"}


def test_dashboard_and_alerts_use_only_exported_metrics():
    exported = exported_names()
    assert "flowker_executions_total" in exported and "flowker_http_request_duration_seconds_bucket" in exported
    expressions = dashboard_expressions() + docs_expressions()
    assert len(dashboard_expressions()) >= 12 and len(docs_expressions()) >= 6
    for expression in expressions:
        names = metric_names(expression)
        assert names, f"no metric in {expression!r}"
        assert names <= exported, f"{expression!r} uses {sorted(names - exported)}, not exported by Flowker"


def test_the_alerts_cover_failures_breakers_queue_and_audit_verification():
    alerts = "\n".join(docs_expressions())
    for needle in (
        'flowker_executions_total{status="failed"}',
        "flowker_circuit_breaker_state",
        "flowker_queue_depth",
        'flowker_audit_verifications_total{result="invalid"}',
    ):
        assert needle in alerts, needle


def test_promtool_parses_every_expression(tmp_path):
    if shutil.which(PROMTOOL) is None:
        pytest.fail(f"{PROMTOOL} is missing: scripts/test.sh installs Debian's prometheus package")
    rules = ["groups:", "  - name: flowker-docs", "    rules:"]
    for index, expression in enumerate(dashboard_expressions() + docs_expressions()):
        rules += [f"      - record: flowker_docs:check_{index}", f"        expr: {json.dumps(expression)}"]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_operations_page_is_linked():
    assert "docs/operations.md" in (ROOT / "README.md").read_text()
    assert "grafana-dashboard.json" in OPERATIONS.read_text()
