"""Every example validates; every invalid file fails with its expected message."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowker.errors import SpecError
from flowker.validation.checks import validate_documents
from flowker.validation.loader import load_spec_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
INVALID = REPO / "tests" / "specs" / "invalid"
REFERENCE_EXECUTORS = REPO / "tests" / "specs" / "reference" / "executors"

INVALID_FILES = sorted(INVALID.glob("*.yaml"))
EXAMPLE_SETS = sorted(path for path in EXAMPLES.iterdir() if path.is_dir())


def _load_all(paths):
    documents, problems = [], []
    for path in paths:
        try:
            documents.append(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)
    return documents, problems


def test_there_are_at_least_three_example_sets_and_twenty_invalid_files():
    assert {path.name for path in EXAMPLE_SETS} >= {"payment-approval", "customer-onboarding", "order-fulfilment"}
    for example in EXAMPLE_SETS:
        assert list((example / "workflows").glob("*.yaml")), example
        assert list((example / "executors").glob("*.yaml")), example
        assert list((example / "tests").glob("*.test.yaml")), example
    assert len(INVALID_FILES) >= 20
    for path in INVALID_FILES:
        assert path.with_suffix(".expected").is_file(), f"{path.name} has no .expected file"


@pytest.mark.parametrize("example", EXAMPLE_SETS, ids=lambda path: path.name)
def test_each_example_set_is_valid_on_its_own(example, registry):
    documents, problems = _load_all(sorted(example.rglob("*.yaml")))
    problems += validate_documents(documents, registry)
    assert [p.format() for p in problems] == []
    kinds = {document.kind for document in documents}
    assert kinds == {"Workflow", "Executor", "WorkflowTest"}  # each example has its tests (flowker test)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda path: path.stem)
def test_invalid_file_fails_with_its_message_at_its_line_and_column(path, registry):
    reference = [load_spec_file(p) for p in sorted(REFERENCE_EXECUTORS.glob("*.yaml"))]
    documents, problems = _load_all([path])
    problems += validate_documents(documents, registry, reference_executors=reference)
    formatted = [problem.format() for problem in problems]
    expected_lines = [line for line in path.with_suffix(".expected").read_text().splitlines() if line.strip()]
    assert expected_lines
    for expected in expected_lines:
        wanted = f"{path}:{expected}"
        assert any(wanted in line for line in formatted), f"expected {wanted!r} in:\n" + "\n".join(formatted)
