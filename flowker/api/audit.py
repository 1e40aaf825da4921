"""``/v1/audit-events``: list (filters, date range, cursor), get, verify."""

from __future__ import annotations

import datetime as _dt
import re

from flowker.api.errors import bad_query
from flowker.api.pagination import fetch_page, parse_choice, parse_limit, resolve_sort
from flowker.api.views import checked_id, parse_time
from flowker.errors import NotFound
from flowker.api.scope import visible_workflow_ids
from flowker.storage.models import AuditEntry, Execution
from flowker.error_codes import ErrorCode

DEFAULT_LIMIT = 20
RESULTS = ("SUCCESS", "FAILED")
# \Z, not $: "$" also matches before a trailing newline ("ABC\n" would pass).
_UPPER_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")
_LOWER_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,31}\Z")


def _stamp(moment: _dt.datetime, *, round_up: bool) -> str:
    """The stored timestamp text (UTC, milliseconds) for a bound; ``round_up`` for lower bounds."""
    micro = moment.microsecond
    if round_up and micro % 1000:
        moment = moment + _dt.timedelta(microseconds=1000 - micro % 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _name_filter(name: str, raw: str | None, pattern: re.Pattern) -> str | None:
    if raw is None:
        return None
    if not pattern.match(raw):
        raise bad_query(f"{name} is not a valid value", ErrorCode.INVALID_QUERY)
    return raw


def entry_view(entry: AuditEntry) -> dict:
    from flowker.audit.chain import entry_to_dict

    return entry_to_dict(entry)


def scoped_entries(req, query):
    """For a principal limited to workflows: only entries about those workflows and their
    executions (steps and calls are recorded against their execution)."""
    visible = visible_workflow_ids(req)
    if visible is None:
        return query
    executions = Execution.select(Execution.id).where(Execution.workflow_id.in_(visible))
    return query.where(AuditEntry.resource_id.in_(visible) | AuditEntry.resource_id.in_(executions))


class Collection:
    SORT_COLUMNS = {"sequence": AuditEntry.sequence}

    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp) -> None:
        query = scoped_entries(req, AuditEntry.select())
        actor = req.get_param("actor")
        if actor is not None:
            if not 1 <= len(actor) <= 255:
                raise bad_query("actor must be 1 to 255 characters", ErrorCode.INVALID_QUERY)
            query = query.where(AuditEntry.actor_id == actor)
        for name, column, pattern in (
            ("eventType", AuditEntry.event_type, _UPPER_NAME),
            ("action", AuditEntry.action, _UPPER_NAME),
            ("resourceType", AuditEntry.resource_type, _LOWER_NAME),
        ):
            value = _name_filter(name, req.get_param(name), pattern)
            if value is not None:
                query = query.where(column == value)
        result = parse_choice("result", req.get_param("result"), RESULTS)
        if result:
            query = query.where(AuditEntry.result == result)
        resource_id = req.get_param("resourceId")
        if resource_id is not None:
            if not 1 <= len(resource_id) <= 255:
                raise bad_query("resourceId must be 1 to 255 characters", ErrorCode.INVALID_QUERY)
            query = query.where(AuditEntry.resource_id == resource_id)
        date_from = parse_time("dateFrom", req.get_param("dateFrom"))
        date_to = parse_time("dateTo", req.get_param("dateTo"))
        if date_from is not None and date_to is not None and date_from > date_to:
            raise bad_query("dateFrom must not be after dateTo", ErrorCode.INVALID_DATE_RANGE)
        if date_from is not None:
            query = query.where(AuditEntry.timestamp >= _stamp(date_from, round_up=True))
        if date_to is not None:
            query = query.where(AuditEntry.timestamp <= _stamp(date_to, round_up=False))
        limit = parse_limit(req.get_param("limit"), DEFAULT_LIMIT)
        sort, cursor = resolve_sort(
            req.get_param("cursor"),
            None,
            req.get_param("sortOrder"),
            self.SORT_COLUMNS,
            AuditEntry.sequence,
            "sequence",
        )
        resp.media = fetch_page(query, sort, cursor, limit).body(entry_view)


def _entry(event_id: str, req=None) -> AuditEntry:
    query = AuditEntry.select().where(AuditEntry.event_id == checked_id(event_id, "audit event"))
    entry = (scoped_entries(req, query) if req is not None else query).first()
    if entry is None:
        raise NotFound(f"audit event {event_id} not found", code=ErrorCode.AUDIT_EVENT_NOT_FOUND)
    return entry


class Item:
    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp, event_id: str) -> None:
        resp.media = entry_view(_entry(event_id, req))


class Verify:
    """Every check ``flowker audit verify`` runs, up to the event (and the witness's, when one
    is configured): ``{isValid, totalChecked, firstInvalidId?, message}``.

    At most one verification runs per process (:class:`flowker.audit.verify_gate.VerifyGate`):
    another request meanwhile gets 429 with ``Retry-After``; a result is reused while the
    chain's head and checkpoints are unchanged, for a short while. The work runs in a child
    process (:mod:`flowker.audit.verify_process`), off this worker's GIL and memory.
    """

    def __init__(self, state):
        from flowker.audit.verify_gate import VerifyGate

        self.state = state
        self.gate = VerifyGate()

    def on_get(self, req, resp, event_id: str) -> None:
        from flowker.audit.verify_process import verify_isolated

        entry = _entry(event_id)
        state = self.state
        result = self.gate.run(
            state.database,
            entry.sequence,
            lambda: verify_isolated(state.settings, entry.sequence, state.database),
        )
        state.metrics.audit_verified(result.is_valid)  # an invalid chain is an alert (docs/operations.md)
        resp.media = result.to_dict()
