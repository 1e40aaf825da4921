"""The canonical form: our fast encoder agrees with rfc8785, and the column prefix the
verifier prints in SQL agrees with the documents."""

from __future__ import annotations

import datetime as dt
import uuid

import rfc8785
from hypothesis import given, settings, strategies as st

from flowker.audit import store
from flowker.audit.canonical import (
    COLUMN_PREFIX_TEMPLATE,
    build_document,
    canonical_text,
    format_timestamp,
    new_event_id,
    to_hashable,
)

ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT | st.decimals(allow_nan=True),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(ANY_TEXT, VALUES, max_size=5))
def test_canonical_text_is_rfc8785(value):
    document = to_hashable(value)
    assert canonical_text(document) == rfc8785.dumps(document).decode("utf-8")


def test_key_order_beyond_the_basic_plane_follows_utf16():
    # By code point U+FF21 < U+1D11E; in UTF-16, U+1D11E (surrogates D834 DD1E) comes first.
    document = {"\uff21": 1, "\U0001d11e": 2, "a": 3}
    assert canonical_text(document) == rfc8785.dumps(document).decode("utf-8")
    assert canonical_text(document).index("\U0001d11e") < canonical_text(document).index("\uff21")


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\'), min_size=1, max_size=10),
        min_size=9,
        max_size=9,
    ),
    sequence=st.integers(1, 2**53 - 1),
)
def test_sql_prefix_format_matches_the_documents(values, sequence):
    names = (
        "action",
        "actor_id",
        "actor_ip",
        "actor_type",
        "event_id",
        "event_type",
        "resource_id",
        "resource_type",
        "result",
    )
    columns = dict(zip(names, values), sequence=sequence, timestamp=format_timestamp(dt.datetime(2026, 1, 1)))
    text = canonical_text(
        build_document(
            sequence=sequence,
            event_id=columns["event_id"],
            event_type=columns["event_type"],
            action=columns["action"],
            result=columns["result"],
            resource_type=columns["resource_type"],
            resource_id=columns["resource_id"],
            actor_type=columns["actor_type"],
            actor_id=columns["actor_id"],
            actor_ip=columns["actor_ip"],
            timestamp=columns["timestamp"],
            context={"k": "v\\"},
            metadata={},
        )
    )
    printed = store._PREFIX_FORMAT % tuple(columns[n.strip()] for n in store._PREFIX_ARGUMENTS.split(","))
    assert printed == COLUMN_PREFIX_TEMPLATE.format(**columns)
    needs_escaping = any(ord(c) < 0x20 for c in "".join(values))
    assert text.startswith(printed) != needs_escaping


def test_event_ids_are_time_ordered_uuid7():
    ids = [new_event_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # the millisecond part never decreases
