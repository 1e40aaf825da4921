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
EDITABLE_COLUMNS = ("event_type", "action", "result", "resource_type", "resource_id", "actor_id",
                    "actor_ip", "timestamp", "event_id", "hash", "previous_hash", "canonical")
# Columns an export carries; edits of the others are visible in the database only.
EXPORTED_COLUMNS = ("hash", "previous_hash", "canonical")


class AuditChainMachine(RuleBasedStateMachine):
    def __init__(self, url: str, signing_key, attacker_key, export_dir):
        super().__init__()
        self.database = migrated(url)
        self.log = AuditLog(self.database, signing_key=signing_key, checkpoint_interval=INTERVAL)
        self.signing_key, self.attacker_key, self.export_dir = signing_key, attacker_key, export_dir
        self.public_keys = cp.keys_by_id([signing_key])
        self.present: list[int] = []          # sequences in the table
        self.checkpoints: dict[int, str] = {}  # sequence -> "good" | "bad" | "forged"
        self.detectable = {"lax": False, "strict": False, "file_lax": False, "file_strict": False}
        self.marker = 0

    def teardown(self):
        close(self.database)

    @property
    def head(self) -> int:
        return self.present[-1] if self.present else 0

    def _tampered(self, *kinds: str) -> None:
        for kind in kinds or self.detectable:
            self.detectable[kind] = True

    # -- honest operations --------------------------------------------------------------

    @rule(count=st.integers(1, 3), resource=NAMES, metadata=st.dictionaries(NAMES, JSON_VALUES, max_size=3))
    def append(self, count, resource, metadata):
        for _ in range(count):
            entry = self.log.append("STEP_COMPLETED", "EXECUTE", "SUCCESS", "execution", resource,
                                    actor=Actor(type="api_key", id=resource, ip="127.0.0.1"), metadata=metadata)
            expected = self.head + 1
            assert entry.sequence == expected
            self.present.append(expected)
            if expected - max(self.checkpoints, default=0) >= INTERVAL:
                self.checkpoints[expected] = "good"

    @precondition(lambda self: self.present)
    @rule()
    def checkpoint_now(self):
        state = self.checkpoints.get(self.head)
        if state == "bad":  # a stale checkpoint signs another hash at this sequence
            try:
                self.log.create_checkpoint()
            except AuditChainError:
                return
            raise AssertionError("a checkpoint contradicting the head was not noticed")
        signed = self.log.create_checkpoint()
        assert signed.sequence == self.head
        self.checkpoints.setdefault(self.head, "good")

    # -- tampering (with the append-only triggers switched off) -------------------------

    @precondition(lambda self: self.present)
    @rule(pick=st.integers(0, 10**6), column=st.sampled_from(EDITABLE_COLUMNS), text=NAMES)
    def edit_column(self, pick, column, text):
        sequence = self.present[pick % len(self.present)]
        if column in ("hash", "previous_hash"):
            value = uuid.uuid4().hex * 2
        elif column == "event_id":
            value = str(uuid.uuid4())
        elif column == "canonical":
            value = None
        else:
            value = text[:32]
        if column == "canonical":
            from audit_helpers import rows

            current = {row[0]: row[4] for row in rows(self.database)}[sequence]
            value = current.replace('"v":1}', '"v":1} ')
        set_column(self.database, sequence, column, value)
        if column in ("actor_ip",) and value == "127.0.0.1":
            return  # unchanged
        self._tampered("lax", "strict")
        if column in EXPORTED_COLUMNS:
            self._tampered("file_lax", "file_strict")

    @precondition(lambda self: len(self.present) >= 2)
    @rule(pick=st.integers(0, 10**6))
    def delete_middle(self, pick):
        sequence = self.present[:-1][pick % (len(self.present) - 1)]
        delete_entries(self.database, [sequence])
        self.present.remove(sequence)
        self._tampered()

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def truncate_tail(self, data):
        count = data.draw(st.integers(1, len(self.present)))
        removed, self.present = self.present[-count:], self.present[:-count]
        delete_entries(self.database, reversed(removed))
        beyond = [s for s in self.checkpoints if s > self.head]
        if beyond:
            self._tampered()
            for sequence in beyond:
                self.checkpoints[sequence] = "bad"

    @precondition(lambda self: self.present)
    @rule(pick=st.integers(0, 10**6), forge=st.booleans())
    def rewrite_without_the_key(self, pick, forge):
        first = self.present[pick % len(self.present)]
        self.marker += 1
        rewrite_from(self.database, first, self.marker, forge_key=self.attacker_key if forge else None)
        for sequence, state in list(self.checkpoints.items()):
            if sequence < first or state == "bad":
                continue
            if forge and sequence <= self.head:
                self.checkpoints[sequence] = "forged"
                self._tampered("strict", "file_strict")
            else:
                self.checkpoints[sequence] = "bad"
                self._tampered()

    # -- the properties ------------------------------------------------------------------

    @invariant()
    def database_verification_matches_the_model(self):
        lax = verify_database(self.database)
        strict = verify_database(self.database, public_keys=self.public_keys, checkpoint_interval=INTERVAL)
        assert lax.is_valid == (not self.detectable["lax"]), (lax.message, self.detectable, self.checkpoints)
        assert strict.is_valid == (not self.detectable["strict"]), (strict.message, self.detectable, self.checkpoints)

    @rule()
    def export_and_verify_offline(self):
        path = self.export_dir / f"export-{uuid.uuid4().hex[:8]}.jsonl"
        export_chain(self.database, str(path), signing_key=self.signing_key, checkpoint_interval=INTERVAL)
        lax, strict = verify_export(str(path)), verify_export(str(path), self.public_keys)
        path.unlink()
        assert lax.is_valid == (not self.detectable["file_lax"]), (lax.message, self.detectable)
        assert strict.is_valid == (not self.detectable["file_strict"]), (strict.message, self.detectable)


def test_verification_reports_invalid_exactly_when_tampered(fresh_url, signing_key, attacker_key, tmp_path):
    run_state_machine_as_test(
        lambda: AuditChainMachine(fresh_url(), signing_key, attacker_key, tmp_path),
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
