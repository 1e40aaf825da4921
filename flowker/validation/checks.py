"""Every check of DESIGN section 3, for spec files and for REST bodies alike.

- :func:`validate_documents` checks loaded files together: executor references
  resolve among the executor documents given, names are unique across files.
- :func:`validate_body` checks one REST body with exactly the same per-document
  checks; executor references resolve among the ``executors`` mapping given.

All problems are reported, not only the first. ``registry`` is the plugin
registry (:func:`flowker.plugins.load_registry`); auth and action type names and
their config schemas are read from it only.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from flowker.validation.documents import (
    EXECUTOR,
    WORKFLOW,
    WORKFLOW_TEST,
    ExecutorSpec,
    SpecDocument,
    WorkflowSpec,
    make_document,
    normalise_kind,
)
from flowker.validation.executor_checks import check_executor
from flowker.validation.expression_checks import check_expressions
from flowker.validation.graph import check_graph, node_ids
from flowker.validation.input_reads import check_input_reads
from flowker.validation.input_schema import check_input_schema
from flowker.validation.node_checks import check_actions, check_executor_references, check_triggers, webhook_route
from flowker.validation.problems import Problem, ProblemList, sorted_unique
from flowker.validation.schedule_checks import check_schedules
from flowker.validation.schemas import check_schema


# Schema validation costs tens of microseconds per value: a 1 MiB body of tiny values
# (hundreds of thousands) would keep a worker busy for seconds. The largest workflow the
# schema admits (100 nodes, 200 edges, 5,000 expressions) holds under 10,000.
MAX_DOCUMENT_VALUES = 20_000


def count_values(value, limit: int) -> int:
    """How many JSON values (scalars, lists, mappings) ``value`` holds, counting stops past ``limit``."""
    count = 0
    pending = [value]
    while pending and count <= limit:
        item = pending.pop()
        count += 1
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


def check_document(
    document: SpecDocument, registry, executors: Mapping | None = None, *, secret_policy=None
) -> list[Problem]:
    """Problems of one document on its own; ``executors`` (name or id -> executor
    document or REST body) resolves executor nodes, None skips that check;
    ``secret_policy`` (a :class:`SecretReferencePolicy`) checks where secret references
    point, None skips that check."""
    problems = ProblemList(document.source, document.locations)
    body = document.body
    if count_values(body, MAX_DOCUMENT_VALUES) > MAX_DOCUMENT_VALUES:
        problems.add(
            (), f"the document holds more than {MAX_DOCUMENT_VALUES} values; at most {MAX_DOCUMENT_VALUES} are allowed"
        )
        return problems.problems
    check_schema(document.kind, body, problems)
    if document.kind == WORKFLOW_TEST:
        return problems.problems  # its workflow is resolved by `flowker test`, which runs it
    if secret_policy is not None:
        from flowker.validation.secret_reference_checks import check_secret_references

        check_secret_references(document.kind, body, secret_policy, problems)
    if document.kind == EXECUTOR:
        check_executor(body, registry, problems, from_file=document.from_file)
    else:
        check_graph(body, problems)
        check_expressions(body, node_ids(body), problems)
        check_input_schema(body, problems)
        check_input_reads(body, problems)
        check_triggers(body, problems, from_file=document.from_file)
        check_schedules(body, problems)
        if registry is not None:
            check_actions(body, registry, problems)
        if executors is not None:
            check_executor_references(body, executors, problems)
    return problems.problems


def validate_documents(
    documents: Iterable[SpecDocument],
    registry,
    *,
    reference_executors: Iterable[ExecutorSpec] = (),
    secret_policy=None,
) -> list[Problem]:
    """Problems of every document, in file order (``secret_policy``: see :func:`check_document`).

    Workflows resolve executors among the executor documents given, plus
    ``reference_executors`` (loaded only to resolve names, their own problems are
    not reported here).
    """
    documents = list(documents)
    executors: dict[str, ExecutorSpec] = {}
    for executor in reference_executors:
        if executor.name:
            executors.setdefault(executor.name, executor)
    # Documents given win over reference-only ones with the same name.
    for document in documents:
        if isinstance(document, ExecutorSpec) and document.name:
            executors[document.name] = document

    problems: list[Problem] = []
    for document in documents:
        problems.extend(check_document(document, registry, executors, secret_policy=secret_policy))
    problems.extend(_duplicate_names(documents))
    problems.extend(_webhook_conflicts(documents))
    return sorted_unique(problems)


def validate_body(
    kind: str,
    body,
    registry,
    *,
    executors: Mapping | None = None,
    source: str = "<request>",
) -> list[Problem]:
    """Problems of a REST body for ``Workflow`` or ``Executor`` (any casing).

    ``executors`` maps executor name (and/or id) to the executor's REST body or
    :class:`ExecutorSpec`; when None, executor references are not resolved.
    Literal secrets are accepted here (they are encrypted at rest by the API).
    """
    resolved = normalise_kind(kind)
    if resolved is None:
        raise ValueError(f"kind must be {WORKFLOW} or {EXECUTOR}, not {kind!r}")
    if not isinstance(body, dict):
        return [Problem(source, None, None, (), "the body must be a JSON object")]
    if "kind" in body and body["kind"] != resolved:
        return [Problem(source, None, None, ("kind",), f"kind must be {resolved!r} here")]
    document = make_document(resolved, body, source, from_file=False)
    return sorted_unique(check_document(document, registry, executors))


def _duplicate_names(documents: list[SpecDocument]) -> list[Problem]:
    problems = []
    first: dict[tuple[str, str], SpecDocument] = {}
    for document in documents:
        if not document.name:
            continue
        key = (document.kind, document.name)
        if key not in first:
            first[key] = document
            continue
        other = first[key]
        line, column = document.location_of(("name",))
        other_line, _ = other.location_of(("name",))
        where = f"{other.source}:{other_line}" if other_line else other.source
        problems.append(
            Problem(
                document.source,
                line,
                column,
                ("name",),
                f"duplicate {document.kind.lower()} name {document.name!r} (also in {where})",
            )
        )
    return problems


def _webhook_conflicts(documents: list[SpecDocument]) -> list[Problem]:
    problems = []
    first: dict[tuple[str, str], WorkflowSpec] = {}
    for document in documents:
        if not isinstance(document, WorkflowSpec):
            continue
        route = webhook_route(document.body)
        if route is None:
            continue
        index, method, path = route
        key = (method, path.rstrip("/"))
        if key not in first:
            first[key] = document
            continue
        line, column = document.location_of(("nodes", index, "data", "path"))
        problems.append(
            Problem(
                document.source,
                line,
                column,
                ("nodes", index, "data", "path"),
                f"webhook {method} {path} is also the trigger of workflow {first[key].name!r} ({first[key].source})",
            )
        )
    return problems
