"""A WorkflowTest document (already checked against its schema) as typed cases."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowker.validation.documents import WorkflowTestSpec

DEFAULT_ANSWER = {"status": 200}


@dataclass
class Fixture:
    """One ``fixtures`` entry; ``answered`` counts the requests it answered (in a case)."""

    call: str  # executor.endpoint as written
    match: dict
    answers: list  # each {status, headers?, body?}; empty when ``failure`` is set
    failure: str | None  # "timeout" | "connection_error"
    label: str  # "#2 (tests/x.yaml:14)" for messages
    answered: int = 0

    def next_answer(self) -> dict:
        """The answer for this request: successive ones from a list, then the last again."""
        answer = self.answers[min(self.answered, len(self.answers) - 1)] if self.answers else DEFAULT_ANSWER
        self.answered += 1
        return answer


@dataclass(frozen=True)
class TestCase:
    name: str
    input: dict
    fixtures: tuple  # raw fixture mappings with their labels: (mapping, label)
    expect: dict
    location: str  # "file:line"

    def fresh_fixtures(self) -> list[Fixture]:
        """New Fixture objects (answer counters at zero) for one run of the case."""
        fixtures = []
        for raw, label in self.fixtures:
            respond = raw.get("respond")
            answers = respond if isinstance(respond, list) else ([respond] if isinstance(respond, dict) else [])
            fixtures.append(
                Fixture(
                    call=raw["call"],
                    match=dict(raw.get("match") or {}),
                    answers=list(answers),
                    failure=raw.get("raise"),
                    label=label,
                )
            )
        return fixtures


@dataclass(frozen=True)
class TestFile:
    source: str
    workflow: str
    secrets: dict
    cases: list = field(default_factory=list)


def read_test_file(document: WorkflowTestSpec) -> TestFile:
    cases = []
    for index, raw in enumerate(document.cases):
        line, _ = document.location_of(("cases", index))
        fixtures = []
        for position, fixture in enumerate(raw.get("fixtures") or []):
            fixture_line, _ = document.location_of(("cases", index, "fixtures", position))
            fixtures.append((fixture, f"#{position + 1} ({document.source}:{fixture_line})"))
        cases.append(
            TestCase(
                name=str(raw.get("name")),
                input=dict(raw.get("input") or {}),
                fixtures=tuple(fixtures),
                expect=dict(raw.get("expect") or {}),
                location=f"{document.source}:{line}",
            )
        )
    secrets = document.body.get("secrets") or {}
    return TestFile(document.source, document.workflow, dict(secrets), cases)


def split_call(call: str, endpoints_by_executor: dict[str, set]) -> tuple[str, str] | None:
    """(executor, endpoint) for ``executor.endpoint``; names may hold dots, so every split
    is tried. None when no executor given has that endpoint."""
    for position in range(len(call) - 1, 0, -1):
        if call[position] != ".":
            continue
        executor, endpoint = call[:position], call[position + 1 :]
        if endpoint in endpoints_by_executor.get(executor, ()):
            return executor, endpoint
    return None
