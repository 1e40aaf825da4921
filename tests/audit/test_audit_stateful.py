"""A hypothesis state machine: random appends and checkpoints interleaved with tampering.

The model knows what was tampered with and whether that is detectable (a rewrite or
truncation beyond the last checkpoint is, by design, not), and after every step the
database verification, with and without the public key, must say "invalid" exactly when
the model says a detectable tampering happened. Offline verification of an export must
agree too (except for edits of indexed columns, which exports do not carry).
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from audit_helpers import close, delete_entries, migrated, rewrite_from, set_column
from flowker.audit.store import ENTRY_COLUMNS, entry_row
from flowker.audit import checkpoints as cp
from flowker.audit.chain import Actor, AuditLog
from flowker.audit.export import export_chain, verify_export
from flowker.audit.verify import verify_database
from flowker.errors import AuditChainError

INTERVAL = 4
# NUL cannot be stored in a PostgreSQL text column; everything else may appear.
NAMES = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=True) | NAMES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(NAMES, children, max_size=3),
    max_leaves=6,
)
EDITABLE_COLUMNS = (
    "event_type",
    "action",
    "result",
    "resource_type",
    "resource_id",
    "actor_id",
    "actor_ip",
    "timestamp",
    "event_id",
    "hash",
    "previous_hash",
    "canonical",
)
# Columns an export carries; edits of the others are visible in the database only.
EXPORTED_COLUMNS = ("hash", "previous_hash", "canonical")


class AuditChainMachine(RuleBasedStateMachine):
    def __init__(self, url: str, signing_key, attacker_key, export_dir):
        super().__init__()
        self.database = migrated(url)
        self.log = AuditLog(self.database, signing_key=signing_key, checkpoint_interval=INTERVAL)
        self.attacker_key, self.export_dir = attacker_key, export_dir
        self.public_keys = cp.keys_by_id([signing_key])
        # The model: sequences present, per entry what was broken in it ("prev", "hash",
        # "content" break the chain; "column" only the indexed columns), and per checkpoint
        # "good", "bad" (its head hash no longer matches, or points past the end) or
        # "forged" (re-signed by the attacker to match a rewrite).
        self.present: list[int] = []
        self.broken: dict[int, set[str]] = {}
        self.checkpoints: dict[int, str] = {}
        # Per checkpoint, the sequence of the checkpoint its statement names as its
        # predecessor (0: none); a checkpoint made while one past the head existed (after a
        # truncation) names that one, which breaks the checkpoints' own chain.
        self.predecessor: dict[int, int] = {}
        self.marker = 0

    def teardown(self):
        close(self.database)

    @property
    def head(self) -> int:
        return self.present[-1] if self.present else 0

    def expected_invalid(self) -> dict[str, bool]:
        gap = self.present != list(range(1, len(self.present) + 1))
        chain = any(self.broken[s] - {"column"} for s in self.present)
        columns = any("column" in self.broken[s] for s in self.present)
        bad = "bad" in self.checkpoints.values()
        forged = "forged" in self.checkpoints.values()
        last_good = max((s for s, state in self.checkpoints.items() if state == "good" and s <= self.head), default=0)
        stale = self.head - last_good >= INTERVAL
        in_order = sorted(self.checkpoints)
        unlinked = any(self.predecessor[s] != ([0] + in_order)[i] for i, s in enumerate(in_order))
        return {
            "lax": gap or chain or columns or bad or unlinked,
            "strict": gap or chain or columns or bad or forged or stale or unlinked,
            "file_lax": gap or chain or bad or unlinked,
            "file_strict": gap or chain or bad or forged or unlinked,
        }

    # -- honest operations --------------------------------------------------------------

    @rule(count=st.integers(1, 3), resource=NAMES, metadata=st.dictionaries(NAMES, JSON_VALUES, max_size=3))
    def append(self, count, resource, metadata):
        for _ in range(count):
            entry = self.log.append(
                "STEP_COMPLETED",
                "EXECUTE",
                "SUCCESS",
                "execution",
                resource,
                actor=Actor(type="api_key", id=resource, ip="127.0.0.1"),
                metadata=metadata,
            )
            expected = self.head + 1
            assert entry.sequence == expected
            self.present.append(expected)
            self.broken[expected] = set()
            if expected - max(self.checkpoints, default=0) >= INTERVAL:
                self.predecessor[expected] = max(self.checkpoints, default=0)
                self.checkpoints[expected] = "good"

    @precondition(lambda self: self.present)
    @rule()
    def checkpoint_now(self):
        if self.checkpoints.get(self.head) == "bad":  # it signs another hash at this sequence
            try:
                self.log.create_checkpoint()
            except AuditChainError:
                return
            raise AssertionError("a checkpoint contradicting the head was not noticed")
        signed = self.log.create_checkpoint()
        assert signed.sequence == self.head
        if self.head not in self.checkpoints:
            self.predecessor[self.head] = max(self.checkpoints, default=0)
            self.checkpoints[self.head] = "good"

    # -- tampering (with the append-only triggers switched off) -------------------------

    @precondition(lambda self: self.present)
    @rule(pick=st.integers(0, 10**6), column=st.sampled_from(EDITABLE_COLUMNS), text=NAMES)
    def edit_column(self, pick, column, text):
        sequence = self.present[pick % len(self.present)]
        current = dict(zip(ENTRY_COLUMNS, entry_row(self.database, sequence)))
        if column in ("hash", "previous_hash"):
            value = uuid.uuid4().hex * 2
        elif column == "event_id":
            value = str(uuid.uuid4())
        elif column == "canonical":
            value = current["canonical"] + " "
        else:
            value = text if text != current[column] else text + "~"
        set_column(self.database, sequence, column, value)
        kind = {"hash": "hash", "previous_hash": "prev", "canonical": "content"}.get(column, "column")
        self.broken[sequence].add(kind)
        if column == "hash" and sequence in self.checkpoints:
            self.checkpoints[sequence] = "bad"

    @precondition(lambda self: len(self.present) >= 2)
    @rule(pick=st.integers(0, 10**6))
    def delete_middle(self, pick):
        sequence = self.present[:-1][pick % (len(self.present) - 1)]
        delete_entries(self.database, [sequence])
        self.present.remove(sequence)
        del self.broken[sequence]

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def truncate_tail(self, data):
        count = data.draw(st.integers(1, len(self.present)))
        removed, self.present = self.present[-count:], self.present[:-count]
        delete_entries(self.database, reversed(removed))
        for sequence in removed:
            del self.broken[sequence]
        for sequence in self.checkpoints:
            if sequence > self.head:
                self.checkpoints[sequence] = "bad"

    @precondition(lambda self: self.present)
    @rule(pick=st.integers(0, 10**6), forge=st.booleans())
    def rewrite_without_the_key(self, pick, forge):
        first = self.present[pick % len(self.present)]
        self.marker += 1
        rewrite_from(self.database, first, self.marker, forge_key=self.attacker_key if forge else None)
        if forge:  # re-signed checkpoints are linked to the last one kept, and to each other
            prior = max((s for s in self.checkpoints if s < first), default=0)
            for sequence in sorted(self.checkpoints):
                if sequence >= first and sequence in self.present:
                    self.predecessor[sequence], prior = prior, sequence
        for sequence in self.present:
            if sequence > first:
                self.broken[sequence] -= {"prev", "hash", "content"}
        self.broken[first] -= {"hash", "content"}  # its stored previous hash is kept
        for sequence, state in list(self.checkpoints.items()):
            if sequence >= first and (state != "bad" or forge) and sequence <= self.head:
                self.checkpoints[sequence] = "forged" if forge else "bad"

    # -- the properties ------------------------------------------------------------------

    @invariant()
    def database_verification_matches_the_model(self):
        expected = self.expected_invalid()
        lax = verify_database(self.database)
        strict = verify_database(self.database, public_keys=self.public_keys, checkpoint_interval=INTERVAL)
        context = (self.present, self.broken, self.checkpoints)
        assert lax.is_valid == (not expected["lax"]), (lax.message, context)
        assert strict.is_valid == (not expected["strict"]), (strict.message, context)

    @rule()
    def export_and_verify_offline(self):
        expected = self.expected_invalid()
        path = self.export_dir / f"export-{uuid.uuid4().hex[:8]}.jsonl"
        export_chain(self.database, str(path), signing_key=self.log.signing_key, checkpoint_interval=INTERVAL)
        lax, strict = verify_export(str(path)), verify_export(str(path), self.public_keys)
        path.unlink()
        context = (self.present, self.broken, self.checkpoints)
        assert lax.is_valid == (not expected["file_lax"]), (lax.message, context)
        assert strict.is_valid == (not expected["file_strict"]), (strict.message, context)


def test_verification_reports_invalid_exactly_when_tampered(fresh_url, signing_key, attacker_key, tmp_path):
    run_state_machine_as_test(
        lambda: AuditChainMachine(fresh_url(), signing_key, attacker_key, tmp_path),
        settings=settings(
            max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
