"""Typed spec documents: what the loader returns and the checks consume.

``body`` is exactly the REST body of the resource (``kind`` removed), so a YAML
file and a ``POST`` go through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from flowker.validation.problems import SourceMap

if TYPE_CHECKING:
    from flowker.auth.base import AuthenticationSpec

WORKFLOW = "Workflow"
EXECUTOR = "Executor"
WORKFLOW_TEST = "WorkflowTest"
KINDS = (WORKFLOW, EXECUTOR)
# What a file may hold: the resources, and the test files `flowker test` runs (never a REST body).
FILE_KINDS = (WORKFLOW, EXECUTOR, WORKFLOW_TEST)


@dataclass(frozen=True)
class SpecDocument:
    kind: ClassVar[str] = ""

    name: str
    body: dict
    source: str
    locations: SourceMap = field(default_factory=SourceMap, repr=False, compare=False)
    # True when the document came from a file (git): secrets must then be references.
    from_file: bool = True

    def location_of(self, path) -> tuple[int | None, int | None]:
        return self.locations.locate(tuple(path))


@dataclass(frozen=True)
class WorkflowSpec(SpecDocument):
    kind: ClassVar[str] = WORKFLOW

    @property
    def nodes(self) -> list:
        nodes = self.body.get("nodes")
        return nodes if isinstance(nodes, list) else []

    @property
    def edges(self) -> list:
        edges = self.body.get("edges")
        return edges if isinstance(edges, list) else []


@dataclass(frozen=True)
class ExecutorSpec(SpecDocument):
    kind: ClassVar[str] = EXECUTOR

    @property
    def endpoints(self) -> list:
        endpoints = self.body.get("endpoints")
        return endpoints if isinstance(endpoints, list) else []

    @property
    def endpoint_names(self) -> set[str]:
        return {e["name"] for e in self.endpoints if isinstance(e, dict) and isinstance(e.get("name"), str)}

    @property
    def auth_type(self) -> str | None:
        authentication = self.body.get("authentication")
        return authentication.get("type") if isinstance(authentication, dict) else None

    @property
    def authentication(self) -> "AuthenticationSpec":
        """The ``authentication`` block, typed (what the runner gets from the stored spec)."""
        from flowker.auth.base import AuthenticationSpec

        return AuthenticationSpec.from_spec(self.body.get("authentication"))


@dataclass(frozen=True)
class WorkflowTestSpec(SpecDocument):
    """A ``kind: WorkflowTest`` file (DESIGN 12): cases run by ``flowker test``."""

    kind: ClassVar[str] = WORKFLOW_TEST

    @property
    def workflow(self) -> str:
        workflow = self.body.get("workflow")
        return workflow if isinstance(workflow, str) else ""

    @property
    def cases(self) -> list:
        cases = self.body.get("cases")
        return cases if isinstance(cases, list) else []


DOCUMENT_TYPES = {WORKFLOW: WorkflowSpec, EXECUTOR: ExecutorSpec, WORKFLOW_TEST: WorkflowTestSpec}


def normalise_kind(kind: str) -> str | None:
    """``Workflow``/``Executor`` from any casing (REST routes say ``workflow``); else None."""
    for known in KINDS:
        if isinstance(kind, str) and kind.lower() == known.lower():
            return known
    return None


def make_document(
    kind: str, body: dict, source: str, locations: SourceMap | None = None, *, from_file: bool
) -> SpecDocument:
    """A typed document from a body; ``kind`` must already be one of ``FILE_KINDS``."""
    body = {key: value for key, value in body.items() if key != "kind"}
    name = body["name"] if isinstance(body.get("name"), str) else ""
    return DOCUMENT_TYPES[kind](
        name=name, body=body, source=source, locations=locations or SourceMap(), from_file=from_file
    )
