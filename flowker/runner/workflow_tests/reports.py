"""What ``flowker test`` reports besides its lines: coverage and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from flowker.runner.graph import EdgePlan, WorkflowPlan
from flowker.runner.workflow_tests.harness import CaseResult, describe_requests


def plan_edges(plan: WorkflowPlan) -> list[EdgePlan]:
    edges = {edge.index: edge for node in plan.nodes for edge in node.incoming}
    return [edges[index] for index in sorted(edges)]


def edge_text(edge: EdgePlan) -> str:
    text = edge.label
    if edge.source_handle is not None:
        text += f" [{edge.source_handle}]"
    if edge.condition is not None:
        text += f" if {edge.condition.source}"
    return text


def untaken(plan: WorkflowPlan, results: list[CaseResult]) -> list[str]:
    """Every conditional branch and edge of ``plan`` that no case in ``results`` took."""
    branches = {(node_id, value) for result in results for node_id, value in result.branches.items()}
    edges = {index for result in results for index in result.edges}
    missing = []
    for node in plan.nodes:
        if node.type == "conditional":
            for value in (True, False):
                if (node.id, value) not in branches:
                    missing.append(f"branch {node.id} = {str(value).lower()} never taken")
    for edge in plan_edges(plan):
        if edge.index not in edges:
            missing.append(f"edge {edge_text(edge)} never taken")
    return missing


def coverage_lines(plans: dict[str, WorkflowPlan], results: list[CaseResult]) -> list[str]:
    lines = []
    for workflow in sorted({result.workflow for result in results if result.workflow in plans}):
        plan = plans[workflow]
        missing = untaken(plan, [r for r in results if r.workflow == workflow and r.outcome is not None])
        branch_count = 2 * sum(1 for node in plan.nodes if node.type == "conditional")
        total = branch_count + len(plan_edges(plan))
        lines.append(f"coverage {workflow}: {total - len(missing)}/{total} branches and edges taken")
        lines.extend(f"  {item}" for item in missing)
    return lines


def write_junit(path: Path, results: list[CaseResult], seconds: float) -> None:
    """JUnit XML: one testsuite per test file, one testcase per case."""
    root = ET.Element(
        "testsuites",
        name="flowker test",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed)),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for source in dict.fromkeys(result.source for result in results):
        cases = [r for r in results if r.source == source]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=source,
            tests=str(len(cases)),
            failures=str(sum(1 for r in cases if not r.passed)),
            errors="0",
            skipped="0",
            time=f"{sum(r.duration_ms for r in cases) / 1000.0:.3f}",
        )
        for result in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=result.workflow,
                name=result.name,
                file=result.location.rsplit(":", 1)[0],
                line=result.location.rsplit(":", 1)[-1],
                time=f"{result.duration_ms / 1000.0:.3f}",
            )
            if not result.passed:
                failure = ET.SubElement(case, "failure", message=result.failures[0], type="AssertionError")
                failure.text = "\n".join(result.failures + ["", "requests:"] + describe_requests(result.requests))
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
