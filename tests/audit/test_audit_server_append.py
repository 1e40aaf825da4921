"""PostgreSQL appends with one server-side call (migration 10's function): the same bytes,
the same hashes, one linear chain under concurrent writers.

Every hash the function stored is recomputed here in Python, and the chain is checked by
the verifier; the fixed vectors of test_audit_prepared_text are reproduced by the function.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re

import pytest
import rfc8785
from test_audit_prepared_text import VECTORS

from audit_helpers import close, migrated, rows
from flowker.audit import checkpoints as cp
from flowker.audit import server_append
from flowker.audit.canonical import GENESIS_HASH, MAX_CANONICAL_BYTES, chain_hash
from flowker.audit.chain import Actor, AuditLog
from flowker.audit.verify import verify_database
from flowker.errors import AuditChainError
from flowker.storage.database import open_database
from flowker.storage.statements import model_row

pytestmark = pytest.mark.postgres
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def pg_url(postgres_schema_url):
    close(migrated(postgres_schema_url))
    return postgres_schema_url


@pytest.fixture
def pg(pg_url):
    database = open_database(pg_url)
    try:
        yield database
    finally:
        close(database)


@pytest.fixture
def calls(monkeypatch):
    """How many times the function was called (a spy: the call still goes to PostgreSQL)."""
    counted = {"calls": 0}
    real = server_append.append

    def counting(*args, **kwargs):
        counted["calls"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(server_append, "append", counting)
    return counted


def _recomputed(database) -> list[tuple]:
    """Every stored entry, with its hash and link recomputed in Python."""
    stored = rows(database, "sequence, hash, previous_hash, canonical")
    previous = GENESIS_HASH
    for index, (sequence, digest, previous_hash, text) in enumerate(stored, 1):
        assert sequence == index
        assert previous_hash == previous
        assert digest == chain_hash(previous, text)
        # The stored text is RFC 8785 canonical JSON of itself.
        assert rfc8785.dumps(json.loads(text)).decode("utf-8") == text
        previous = digest
    return stored


def test_the_function_reproduces_the_fixed_vectors(pg):
    previous = GENESIS_HASH
    with pg.connection_context():
        for fields, _canonical, expected_hash in VECTORS:
            fields = dict(fields)
            sequence, event_id, timestamp = fields.pop("sequence"), fields.pop("event_id"), fields.pop("timestamp")
            item = AuditLog._prepare(
                event_id,
                fields["event_type"],
                fields["action"],
                fields["result"],
                fields["resource_type"],
                fields["resource_id"],
                fields["actor"],
                fields["context"],
                fields["metadata"],
            )
            with pg.atomic():
                first, stamp, before, hashes, last_checkpoint, locked_at = server_append.append(
                    pg, [model_row(item.entry)], [item.head], [item.tail], last_checkpoint=False, timestamp=timestamp
                )
            assert (first, stamp, before, hashes, last_checkpoint) == (
                sequence,
                timestamp,
                previous,
                [expected_hash],
                None,
            )
            assert locked_at is not None
            previous = expected_hash
    stored = rows(pg, "sequence, event_id, timestamp, canonical, previous_hash, hash")
    assert [row[3] for row in stored] == [text for _, text, _ in VECTORS]
    assert [row[5] for row in stored] == [digest for _, _, digest in VECTORS]
    assert [row[:3] for row in stored] == [(f["sequence"], f["event_id"], f["timestamp"]) for f, _, _ in VECTORS]
    assert verify_database(pg).is_valid


# Text that exercises every escape and the key orders where RFC 8785 and code-point order differ.
_PIECES = [
    "plain",
    'quote " and \\ backslash',
    "tab\tnew\nline\r\x01\x1f\x7f",
    "\u2028\u2029",
    "caf\u00e9 \u00e9l\u00e8ve",
    "\u4e2d\u6587",
    "\U0001f600\U0001d11e",
    "\ue000\uff21\ufffd",
    "\x00 nul in a payload",
    "</script>&<'",
    "",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 3)))


def _item(rng: random.Random, worker: int, index: int) -> dict:
    context = {_text(rng) or "k": _text(rng) for _ in range(rng.randint(0, 4))}
    context["nested"] = [{_text(rng) or "n": [_text(rng), rng.randint(-(2**60), 2**60), rng.random()]}, None, True]
    return {
        "event_type": rng.choice(["STEP_COMPLETED", "PROVIDER_CALL_FAILED", "CUSTOM_EVENT"]),
        "action": "EXECUTE",
        "result": rng.choice(["SUCCESS", "FAILED"]),
        "resource_type": "execution",
        "resource_id": (_text(rng).replace("\x00", "") or "r") + f"-{worker}-{index}",
        "actor": Actor("user", _text(rng).replace("\x00", "") or "a", "::1"),
        "context": context,
        "metadata": {"worker": worker, "index": index, "password": _text(rng), _text(rng) or "m": _text(rng)},
    }


def test_escape_heavy_entries_hash_as_python_does(pg, calls):
    rng = random.Random(18)
    log = AuditLog(pg)
    appended = []
    with pg.connection_context():
        for index in range(120):
            batch = [_item(rng, 0, index * 10 + n) for n in range(rng.randint(1, 6))]
            appended += log.append_many(batch)
    assert calls["calls"] == 120
    stored = _recomputed(pg)
    assert len(stored) == len(appended)
    # What append_many answered is what the function stored.
    assert [(e.sequence, e.hash, e.previous_hash, e.canonical) for e in appended] == [
        (s, h, p, c) for s, h, p, c in stored
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e.timestamp) for e in appended)
    stamps = [e.timestamp for e in appended]
    assert stamps == sorted(stamps)
    result = verify_database(pg)
    assert result.is_valid and result.total_checked == len(appended), result.message


def test_client_side_and_server_side_appends_make_one_chain(pg, calls):
    rng = random.Random(7)
    with pg.connection_context():
        for index in range(30):
            AuditLog(pg, append_on_server=index % 2 == 0).append_many([_item(rng, 0, index), _item(rng, 0, -index)])
    assert calls["calls"] == 15
    assert len(_recomputed(pg)) == 60
    assert verify_database(pg).is_valid


def test_signed_checkpoints_still_come_every_interval(pg, calls, signing_key):
    rng = random.Random(3)
    log = AuditLog(pg, signing_key=signing_key, checkpoint_interval=5)
    sizes = [rng.randint(1, 7) for _ in range(25)]
    with pg.connection_context():
        for index, size in enumerate(sizes):
            log.append_many([_item(rng, 0, index * 10 + n) for n in range(size)])
        checkpoints = [cp.Checkpoint.from_row(row) for row in server_append.store.all_checkpoints(pg)]
    assert calls["calls"] == 25
    # One at each sequence 5 or more past the last one, as the client-side path places them.
    expected, last = [], 0
    for sequence in range(1, sum(sizes) + 1):
        if sequence - last >= 5:
            expected.append(sequence)
            last = sequence
    assert [c.sequence for c in checkpoints] == expected
    assert [c.entry_count for c in checkpoints] == expected
    assert verify_database(pg, public_keys=cp.keys_by_id([signing_key]), checkpoint_interval=5).is_valid


def test_an_entry_over_the_size_limit_is_refused_as_before_and_nothing_is_written(pg, calls):
    log = AuditLog(pg)
    big = {"x": "y" * MAX_CANONICAL_BYTES}
    with pg.connection_context():
        log.append("CUSTOM_EVENT", "EXECUTE", "SUCCESS", "execution", "ok")
        with pytest.raises(AuditChainError, match="more than"):
            log.append_many(
                [
                    dict(
                        event_type="CUSTOM_EVENT",
                        action="EXECUTE",
                        result="SUCCESS",
                        resource_type="x",
                        resource_id="a",
                    ),
                    dict(
                        event_type="CUSTOM_EVENT",
                        action="EXECUTE",
                        result="SUCCESS",
                        resource_type="x",
                        resource_id="b",
                        context=big,
                    ),
                ]
            )
        # A lone surrogate is refused while preparing; the batch goes the client-side way.
        with pytest.raises(AuditChainError, match="cannot be canonicalized"):
            log.append("CUSTOM_EVENT", "EXECUTE", "SUCCESS", "execution", "\ud800\ue000")
    assert calls["calls"] == 1  # only the first append: the refused ones never reach the function
    assert len(_recomputed(pg)) == 1


def _writer(url: str, worker: int, appends: int, start, results) -> None:
    database = open_database(url)
    log = AuditLog(database)
    rng = random.Random(worker)
    acknowledged, error = [], None
    start.wait(30)
    try:
        with database.connection_context():
            for index in range(appends):
                batch = [_item(rng, worker, index * 10 + n) for n in range(rng.randint(1, 4))]
                acknowledged += [entry.sequence for entry in log.append_many(batch)]
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        error = repr(exc)
    close(database)
    results.put((worker, acknowledged, error))


def test_concurrent_processes_make_one_linear_chain(pg_url):
    writers, appends = 4, 60
    start, results = FORK.Event(), FORK.Queue()
    processes = [FORK.Process(target=_writer, args=(pg_url, n, appends, start, results)) for n in range(writers)]
    for process in processes:
        process.start()
    start.set()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [error for _, _, error in reports if error] == []
    acknowledged = sorted(sequence for _, sequences, _ in reports for sequence in sequences)
    database = open_database(pg_url)
    try:
        stored = _recomputed(database)
        assert acknowledged == [row[0] for row in stored]  # every entry acknowledged once, no gap
        result = verify_database(database)
        assert result.is_valid and result.total_checked == len(stored), result.message
    finally:
        close(database)


def _sized(size: int):
    return AuditLog._prepare("e", "CUSTOM_EVENT", "EXECUTE", "SUCCESS", "x", "r", None, {"x": "y" * size}, None)


def test_fits_sends_only_what_cannot_reach_the_size_limit():
    empty = _sized(0)
    overhead = len(empty.head) + len(empty.tail)
    # The largest text a 19-digit sequence and a timestamp can make still within the limit.
    largest = MAX_CANONICAL_BYTES - overhead - len(',"timestamp":""') - 24 - 19
    assert server_append.fits([empty, _sized(largest)])
    assert not server_append.fits([empty, _sized(largest + 1)])
    wide = "\u00e9" * (largest // 2)  # two UTF-8 bytes each: counted in bytes, not characters
    assert server_append.fits([AuditLog._prepare("e", "C", "EXECUTE", "SUCCESS", "x", "r", None, {"x": wide}, None)])
    refused = AuditLog._prepare("e", "CUSTOM_EVENT", "EXECUTE", "SUCCESS", "x", "\ud800\ue000", None, None, None)
    assert refused.error is not None and not server_append.fits([refused])


def test_migration_10_gives_an_older_database_the_function(pg):
    from flowker.storage.audit_function import FUNCTION_NAME
    from flowker.storage.migrations import upgrade

    def present() -> bool:
        with pg.connection_context():
            return pg.execute_sql("SELECT to_regproc(%s) IS NOT NULL", (FUNCTION_NAME,)).fetchone()[0]

    assert present()
    with pg.connection_context():
        # A database made before migration 10: no function, no record of the migration.
        pg.execute_sql(f"DROP FUNCTION {FUNCTION_NAME}")
        pg.execute_sql("DELETE FROM schema_migration WHERE version = 10")
    assert not present()
    assert upgrade(pg) == [10]
    assert present() and upgrade(pg) == []
    log = AuditLog(pg)
    with pg.connection_context():
        log.append("CUSTOM_EVENT", "EXECUTE", "SUCCESS", "execution", "after-upgrade")
    assert len(_recomputed(pg)) == 1
