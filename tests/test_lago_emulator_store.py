"""The pure store behind the Lago emulator, case by case against lago-api v1.51.0's source."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from decimal import ROUND_FLOOR, Context, Decimal, localcontext
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.lago_emulator import store as emulator_store
from reconcile.lago_emulator.index import EventIndex
from reconcile.lago_emulator.rails import Request, answer
from reconcile.lago_emulator.store import MAX_BATCH, EventStore, Reply, Store
from reconcile.lago_emulator.values import (
    Unrescued,
    cast_timestamp,
    kaminari_limit,
    map_string,
    pagination_meta,
    parse_iso8601,
    random_uuid,
    ruby_to_i,
)

RECEIVED = dt.datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
RECEIVED_TEXT = "2026-11-01T12:00:00.123Z"


def event(transaction_id: str = "t-1", **fields: Any) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "code": "tokens", **fields}


def details(reply: Reply) -> Any:
    assert reply.status == 422, reply
    assert {k: v for k, v in reply.body.items() if k != "error_details"} == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
    }
    return reply.body["error_details"]


def created(store: EventStore, params: dict[str, Any], at: dt.datetime = RECEIVED) -> Any:
    reply = store.create(params, at)
    assert reply.status == 200, reply
    return reply.body["event"]


def numpy_seconds(seconds: int) -> str:
    """An independent rendering of a Unix time, years past 9999 included."""
    return f"{np.datetime64(seconds, 's')}.000Z"


# CreateService: `Time.zone.at(params[:timestamp] ? BigDecimal(params[:timestamp].to_s) : now)`,
# rendered by EventSerializer with `iso8601(3)`.
@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1704067200, "2024-01-01T00:00:00.000Z"),
        (1704067200.5, "2024-01-01T00:00:00.500Z"),
        ("1704067200", "2024-01-01T00:00:00.000Z"),
        ("1704067200.123", "2024-01-01T00:00:00.123Z"),
        ("1704067200.1239", "2024-01-01T00:00:00.123Z"),  # truncated, not rounded
        (" 1704067200 ", "2024-01-01T00:00:00.000Z"),
        ("1.7040672e9", "2024-01-01T00:00:00.000Z"),  # BigDecimal takes exponents
        (0, "1970-01-01T00:00:00.000Z"),  # 0 is truthy in Ruby
        (-1.5, "1969-12-31T23:59:58.500Z"),
        (1704067200123, numpy_seconds(1704067200123)),  # milliseconds read as seconds
        (None, RECEIVED_TEXT),
        (False, RECEIVED_TEXT),  # falsy in Ruby: reception time
        ([1704067200], RECEIVED_TEXT),  # `permit` drops non-scalars
        ({"seconds": 1}, RECEIVED_TEXT),
    ],
)
def test_timestamps_are_unix_seconds(timestamp: Any, expected: str) -> None:
    assert created(EventStore(), event(timestamp=timestamp))["timestamp"] == expected


def test_an_absent_timestamp_is_reception_time() -> None:
    assert created(EventStore(), event())["timestamp"] == RECEIVED_TEXT


@pytest.mark.parametrize(
    "timestamp", ["2024-01-01T00:00:00Z", "yesterday", "", "0x10", "1,5", True]
)
def test_timestamps_bigdecimal_refuses_are_invalid_format(timestamp: Any) -> None:
    for store in (EventStore(), EventStore(Store.CLICKHOUSE)):
        assert details(store.create(event(timestamp=timestamp), RECEIVED)) == {
            "timestamp": ["invalid_format"]
        }


@pytest.mark.parametrize(
    ("timestamp", "store"),
    [
        ("Infinity", Store.POSTGRES),  # FloatDomainError in Time.at: not rescued
        (float("inf"), Store.CLICKHOUSE),
        (10**16, Store.POSTGRES),  # microseconds as seconds: past Postgres' year 294276
    ],
)
def test_timestamps_lago_cannot_store_are_500s(timestamp: Any, store: Store) -> None:
    reply = EventStore(store).create(event(timestamp=timestamp), RECEIVED)
    assert reply == Reply(500, {"status": 500, "error": "Internal Server Error"})


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(123, "123"), (1.5, "1.5"), (True, "t"), (False, "f"), ("  a b ", "  a b ")],
)
def test_ids_are_cast_to_strings(sent: Any, expected: str) -> None:
    shown = created(EventStore(), event(transaction_id=sent, external_subscription_id=sent))
    assert (shown["transaction_id"], shown["external_subscription_id"]) == (expected, expected)


# ActiveModel's decimal(40, 15) cast, rendered with `&.to_s` (ActiveSupport's "F" format).
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("123.45", "123.45"),
        (10, "10.0"),
        ("0", "0.0"),
        (0.1, "0.1"),
        ("1.0000000000000005", "1.000000000000001"),  # scale 15, rounded half up
        ("12abc", "12.0"),  # String#to_d reads the numeric prefix
        ("abc", "0.0"),
        ("", None),
        (None, None),
        (["1"], None),
    ],
)
def test_precise_total_amount_cents(sent: Any, expected: str | None) -> None:
    shown = created(EventStore(), event(precise_total_amount_cents=sent))
    assert shown["precise_total_amount_cents"] == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"code": "tokens"}, {"transaction_id": ["value_is_mandatory"]}),
        ({"transaction_id": "t"}, {"code": ["value_is_mandatory"]}),
        ({}, {"transaction_id": ["value_is_mandatory"], "code": ["value_is_mandatory"]}),
        ({"transaction_id": " \t", "code": "tokens"}, {"transaction_id": ["value_is_mandatory"]}),
        ({"transaction_id": ["t"], "code": "tokens"}, {"transaction_id": ["value_is_mandatory"]}),
        # The timestamp is cast before `save!` validates: its error alone is reported.
        ({"timestamp": "x"}, {"timestamp": ["invalid_format"]}),
    ],
)
def test_transaction_id_and_code_are_mandatory_on_postgres(
    params: dict[str, Any], expected: dict[str, Any]
) -> None:
    store = EventStore()
    assert details(store.create(params, RECEIVED)) == expected
    assert store.stored_events() == []


def test_clickhouse_skips_validation_of_single_events() -> None:
    store = EventStore(Store.CLICKHOUSE)
    shown = created(store, {"properties": {"a": 1}})
    assert (shown["transaction_id"], shown["code"], shown["lago_id"]) == (None, None, None)
    [stored] = store.stored_events()
    assert (stored["transaction_id"], stored["code"], stored["external_subscription_id"]) == (
        "",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("first", "second", "duplicate"),
    [
        ({"external_subscription_id": "s1"}, {"external_subscription_id": "s1"}, True),
        ({"external_subscription_id": "s1"}, {"external_subscription_id": "s2"}, False),
        ({}, {}, False),  # NULLs are distinct in the unique index
        ({"external_subscription_id": "s1", "code": "a"}, {"external_subscription_id": "s1"}, True),
        (
            {"external_subscription_id": "s1", "timestamp": 1},
            {"external_subscription_id": "s1"},
            True,
        ),
    ],
)
def test_postgres_dedupes_on_subscription_and_transaction_id(
    first: dict[str, Any], second: dict[str, Any], duplicate: bool
) -> None:
    store = EventStore()
    created(store, event(**first))
    reply = store.create(event(**second), RECEIVED)
    if duplicate:
        assert details(reply) == {"transaction_id": ["value_already_exist"]}
    assert len(store.stored_events()) == (1 if duplicate else 2)


def test_clickhouse_keeps_every_copy() -> None:
    store = EventStore(Store.CLICKHOUSE)
    for _ in range(3):
        created(store, event(external_subscription_id="s1"))
    assert len(store.list_events({}).json()["events"]) == 3


def test_postgres_serialization() -> None:
    store = EventStore()
    shown = created(store, event(external_subscription_id="s1", properties={"bb": 1, "a": "x"}))
    assert uuid.UUID(shown["lago_id"]).version == 4
    assert shown == {
        "lago_id": shown["lago_id"],
        "transaction_id": "t-1",
        "lago_customer_id": None,
        "code": "tokens",
        "timestamp": RECEIVED_TEXT,
        "precise_total_amount_cents": None,
        "properties": {"bb": 1, "a": "x"},
        "lago_subscription_id": None,
        "external_subscription_id": "s1",
        "created_at": "2026-11-01T12:00:00Z",
    }
    [stored] = store.stored_events()
    assert stored == shown
    assert list(stored["properties"]) == ["a", "bb"]  # jsonb orders keys by length, then bytes


def test_clickhouse_serialization() -> None:
    store = EventStore(Store.CLICKHOUSE, organization_id="org")
    properties = {"model": "gpt-4o", "cost": 1.5, "tokens": 12, "ok": True, "tags": ["a"]}
    shown = created(store, event(external_subscription_id="s1", properties=properties))
    assert (shown["lago_id"], shown["created_at"]) == (None, None)  # never saved by the API
    assert shown["properties"] == properties
    [stored] = store.stored_events()
    assert stored == {
        "lago_id": f"org-s1-t-1-{int(RECEIVED.timestamp())}",  # Clickhouse::EventsRaw#id
        "transaction_id": "t-1",
        "lago_customer_id": None,
        "code": "tokens",
        "timestamp": RECEIVED_TEXT,
        "precise_total_amount_cents": "0.0",  # the Kafka payload's default
        "properties": {
            "model": "gpt-4o",
            "cost": "1.5",
            "tokens": "12",
            "ok": "true",
            "tags": '["a"]',
        },
        "lago_subscription_id": None,
        "external_subscription_id": "s1",
        "created_at": "2026-11-01T12:00:00Z",  # ingested_at
    }


def test_find_returns_the_first_stored_or_event_not_found() -> None:
    store = EventStore()
    first = created(store, event(external_subscription_id="s1"))
    created(store, event(external_subscription_id="s2"))
    assert store.find("t-1") == Reply(200, {"event": first})
    assert store.find("t-2") == Reply(
        404, {"status": 404, "error": "Not Found", "code": "event_not_found"}
    )


# CreateBatchService
def test_batch_sizes() -> None:
    store = EventStore()
    assert details(store.create_batch(None, RECEIVED)) == {"events": ["no_events"]}
    assert details(store.create_batch([], RECEIVED)) == {"events": ["no_events"]}
    too_many = [event(f"t-{i}") for i in range(MAX_BATCH + 1)]
    assert details(store.create_batch(too_many, RECEIVED)) == {"events": ["too_many_events"]}
    reply = store.create_batch(too_many[:MAX_BATCH], RECEIVED)
    assert reply.status == 200
    assert len(reply.json()["events"]) == len(store.stored_events()) == MAX_BATCH


@pytest.mark.parametrize(
    ("stored", "batch", "expected"),
    [
        ([], [event("a"), {"code": "c"}, event("c", timestamp="x")],
         {"1": {"transaction_id": ["value_is_mandatory"]}, "2": {"timestamp": ["invalid_format"]}}),
        ([event("a", external_subscription_id="s")], [event("b"), event("a", external_subscription_id="s")],
         {"1": {"transaction_id": ["value_already_exist"]}}),
        ([], [event("a", external_subscription_id="s"), event("a", external_subscription_id="s")],
         {"1": {"transaction_id": ["value_already_exist"]}}),
        # Rows come back matched by transaction_id alone: one id twice fails, whatever the
        # subscription, even with none.
        ([], [event("a", external_subscription_id="s1"), event("a", external_subscription_id="s2")],
         {"1": {"transaction_id": ["value_already_exist"]}}),
        ([], [event("a"), event("a")], {"1": {"transaction_id": ["value_already_exist"]}}),
        # The stored clash skips item 0, whose transaction_id then claims item 1's row.
        ([event("a", external_subscription_id="s1")],
         [event("a", external_subscription_id="s1"), event("a", external_subscription_id="s2")],
         {"1": {"transaction_id": ["value_already_exist"]}}),
        # Validation errors stop the batch before any insert: duplicates are not reported.
        ([event("a", external_subscription_id="s")], [event("a", external_subscription_id="s"), {}],
         {"1": {"transaction_id": ["value_is_mandatory"], "code": ["value_is_mandatory"]}}),
    ],
)  # fmt: skip
def test_batches_are_all_or_nothing(
    stored: list[dict[str, Any]], batch: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    store = EventStore()
    for params in stored:
        created(store, params)
    before = store.stored_events()
    assert details(store.create_batch(batch, RECEIVED)) == expected
    assert store.stored_events() == before


def test_batches_of_events_without_subscription_accept_stored_ids() -> None:
    store = EventStore()
    created(store, event("a"))
    assert store.create_batch([event("a")], RECEIVED).status == 200
    assert len(store.stored_events()) == 2


def test_legacy_batches_keep_the_good_items() -> None:
    """Before v1.39 (lago-api #4772) a batch with duplicates failed but stored the others."""
    store = EventStore(legacy_partial_batches=True)
    created(store, event("a", external_subscription_id="s"))
    batch = [event("b", external_subscription_id="s"), event("a", external_subscription_id="s"),
             event("a", external_subscription_id="s2"), event("b", external_subscription_id="s")]  # fmt: skip
    expected = {str(i): {"transaction_id": ["value_already_exist"]} for i in (1, 3)}
    assert details(store.create_batch(batch, RECEIVED)) == expected
    stored = [(e["transaction_id"], e["external_subscription_id"]) for e in store.stored_events()]
    assert stored == [("a", "s"), ("b", "s"), ("a", "s2")]
    # Validation errors still stored nothing.
    assert details(store.create_batch([event("c"), {}], RECEIVED)).keys() == {"1"}
    assert len(store.stored_events()) == 3


def test_clickhouse_batches_validate_then_keep_every_copy() -> None:
    store = EventStore(Store.CLICKHOUSE)
    assert details(store.create_batch([event("a"), {"code": "c"}], RECEIVED)) == {
        "1": {"transaction_id": ["value_is_mandatory"]}
    }
    reply = store.create_batch([event("a"), event("a")], RECEIVED)
    assert [shown["lago_id"] for shown in reply.json()["events"]] == [None, None]
    assert len(store.stored_events()) == 2


# EventsQuery
def listed(store: EventStore, **query: str) -> list[str]:
    reply = store.list_events(query)
    assert reply.status == 200, reply
    return [shown["transaction_id"] for shown in reply.json()["events"]]


def test_postgres_lists_by_timestamp_desc_then_transaction_id() -> None:
    store = EventStore()
    for transaction_id, timestamp in [("b", 10), ("a", 10), ("c", 5), ("d", 20.000001)]:
        created(store, event(transaction_id, timestamp=timestamp))
    assert listed(store) == ["d", "a", "b", "c"]


def test_clickhouse_lists_by_reception_then_transaction_id() -> None:
    store = EventStore(Store.CLICKHOUSE)
    for transaction_id, timestamp, received_s in [("b", 1, 0), ("a", 2, 0), ("c", 3, -1)]:
        created(
            store,
            event(transaction_id, timestamp=timestamp),
            RECEIVED + dt.timedelta(seconds=received_s),
        )
    assert listed(store) == ["a", "b", "c"]


def test_filters() -> None:
    store = EventStore()
    created(store, event("a", code="x", external_subscription_id="s1", timestamp=1704067200))
    created(store, event("b", code="y", external_subscription_id="s1", timestamp=1704153600))
    created(store, event("c", code="x", timestamp=1704153600.5))
    assert listed(store, code="x") == ["c", "a"]
    assert listed(store, code="") == []
    assert listed(store, external_subscription_id="s1") == ["b", "a"]
    # Both bounds are inclusive; a date alone is its midnight.
    assert listed(store, timestamp_from="2024-01-02") == ["c", "b"]
    assert listed(store, timestamp_to="2024-01-02") == ["b", "a"]
    assert listed(store, timestamp_from="2024-01-02T00:00:00.5Z", timestamp_to="2024-01-02T00:00:00.500Z") == ["c"]  # fmt: skip
    assert listed(store, timestamp_to="2024-01-02T01:00:00+01:00") == ["b", "a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", "2024-01-02T00:00:00+00:00"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
        ("2024-01-02t03:04", "2024-01-02T03:04:00+00:00"),
        ("2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123456+00:00"),
        ("2024-01-02T03:04:05,5+02:30", "2024-01-02T00:34:05.500000+00:00"),
        ("2024-01-02T03:04:05-0100", "2024-01-02T04:04:05+00:00"),
        ("20240102T030405Z", "2024-01-02T03:04:05+00:00"),
        ("2024-002", "2024-01-02T00:00:00+00:00"),
        ("2024-W01-2", "2024-01-02T00:00:00+00:00"),
        (" 2024-01-02 ", "2024-01-02T00:00:00+00:00"),
        ("2024-01-02 03:04:05", None),  # a space is not ISO 8601's `T`
        ("2024-13-01", None),
        ("2023-366", None),
        ("1704067200", None),
        ("yesterday", None),
        ("", None),
        ("2024-01-02T03:04:05Z" + " " * 120, None),  # Ruby refuses past 128 characters
    ],
)
def test_timestamp_filters_parse_as_ruby_datetime_iso8601(text: str, expected: str | None) -> None:
    micros = parse_iso8601(text)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    shown = None if micros is None else epoch + dt.timedelta(microseconds=micros)
    assert (shown and shown.isoformat()) == expected


def test_a_bad_date_is_invalid_date_from_first() -> None:
    store = EventStore()
    assert details(store.list_events({"timestamp_to": "x"})) == {"timestamp_to": ["invalid_date"]}
    assert details(store.list_events({"timestamp_from": "", "timestamp_to": "x"})) == {
        "timestamp_from": ["invalid_date"]
    }


# Pagination#pagination_metadata over Kaminari's page/per.
NULL = None


@pytest.mark.parametrize(
    ("events", "query", "cap", "page_size", "meta"),
    [
        # Lago's own request spec: two events, page=1, per_page=1.
        (2, {"page": "1", "per_page": "1"}, None, 1, (1, 2, NULL, 2, 2)),
        (0, {}, None, 0, (0, NULL, NULL, 0, 0)),
        (0, {"page": "3", "per_page": "0"}, None, 0, (0, NULL, NULL, 0, 0)),
        (250, {}, None, 100, (1, 2, NULL, 3, 250)),
        (250, {"page": "3"}, None, 50, (3, NULL, 2, 3, 250)),
        (3, {"page": "7"}, None, 0, (7, NULL, 6, 1, 3)),
        (3, {"page": "0"}, None, 3, (1, NULL, NULL, 1, 3)),
        (3, {"page": "-2", "per_page": "2"}, None, 2, (1, 2, NULL, 2, 3)),
        (30, {"per_page": "abc"}, None, 25, (1, 2, NULL, 2, 30)),  # Kaminari's default stays
        (30, {"per_page": "-5"}, None, 25, (1, 2, NULL, 2, 30)),
        (30, {"per_page": "10abc", "page": "2xyz"}, None, 10, (2, 3, 1, 3, 30)),
        (30, {}, 7, 7, (1, 2, NULL, 5, 30)),
        (30, {"per_page": "5"}, 7, 5, (1, 2, NULL, 6, 30)),
    ],
)
def test_pagination(
    events: int, query: dict[str, str], cap: int | None, page_size: int, meta: tuple[Any, ...]
) -> None:
    store = EventStore()
    for i in range(events):
        created(store, event(f"t-{i:03d}"))
    reply = store.list_events(query, per_page_cap=cap)
    assert reply.status == 200
    assert len(reply.json()["events"]) == page_size
    names = ("current_page", "next_page", "prev_page", "total_pages", "total_count")
    assert reply.json()["meta"] == dict(zip(names, meta, strict=True))


def test_per_page_zero_with_results_is_kaminaris_500() -> None:
    store = EventStore()
    created(store, event())
    assert store.list_events({"per_page": "0"}).status == 500


# The listing index against the scan-and-sort it replaced, kept here as the oracle.
def same(got: Reply, wanted: Reply) -> bool:
    """Equal answers, however their bodies are held (encoded or not)."""
    return (got.status, got.json()) == (wanted.status, wanted.json())


def scanned(store: EventStore, query: dict[str, str], cap: int | None = None) -> Reply:
    """EventsQuery as the emulator first answered it: every event shown, filtered, sorted."""
    bounds: dict[str, int] = {}
    for name in ("timestamp_from", "timestamp_to"):
        if name in query:
            parsed = parse_iso8601(query[name])
            if parsed is None:
                return Reply(422, {"status": 422, "error": "Unprocessable Entity",
                                   "code": "validation_errors", "error_details": {name: ["invalid_date"]}})  # fmt: skip
            bounds[name] = parsed
    rows = []
    for event, shown in zip(store._events, store.stored_events(), strict=True):
        stored_us = event.timestamp_us
        if store.store is Store.CLICKHOUSE:  # DateTime64(3), listed by ingested_at
            stored_us, sort_us = stored_us // 1000 * 1000, event.received_us // 1000
        else:
            sort_us = stored_us
        if (
            query.get("code", shown["code"]) == shown["code"]
            and query.get("external_subscription_id", shown["external_subscription_id"])
            == shown["external_subscription_id"]
            and bounds.get("timestamp_from", stored_us)
            <= stored_us
            <= bounds.get("timestamp_to", stored_us)
        ):
            rows.append((sort_us, shown["transaction_id"] or "", shown))
    rows.sort(key=lambda row: row[1])  # stable sorts: time desc, then transaction_id asc
    rows.sort(key=lambda row: row[0], reverse=True)
    page = max(ruby_to_i(query.get("page", "1")), 1)
    limit = kaminari_limit(query.get("per_page"), cap)
    if limit == 0 and rows:
        return Reply(500, {"status": 500, "error": "Internal Server Error"})
    offset = (page - 1) * limit
    page_rows = [shown for _, _, shown in rows[offset : offset + limit]]
    return Reply(200, {"events": page_rows, "meta": pagination_meta(page, limit, len(rows))})


# Few distinct values, so that ties, duplicates and empty answers are common.
SECONDS = 1704067200
TIMESTAMPS = [None, SECONDS, SECONDS + 1, SECONDS + 0.5, f"{SECONDS}.123", f"{SECONDS}.1234",
              f"{SECONDS}.123999", f"{SECONDS}.000001", SECONDS - 0.001, "nope", f"{SECONDS}.5"]  # fmt: skip
BOUNDS = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123Z", "2024-01-01T00:00:00.1234Z",
          "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:01Z", "2023-12-31T23:59:59.999Z",
          "2024-01-01", "2026-11-01T12:00:00.123Z", "bad"]  # fmt: skip
RECEPTIONS = [0, 1, 999, 1000, 1500, -1000, 2_000_000]  # microseconds after RECEIVED

params_strategy = st.fixed_dictionaries(
    {
        "transaction_id": st.sampled_from(["a", "b", "c", "d", "", 7]),
        "code": st.sampled_from(["x", "x", "y", ""]),
    },
    optional={
        "external_subscription_id": st.sampled_from(["s1", "s2", ""]),
        "timestamp": st.sampled_from(TIMESTAMPS),
        "properties": st.sampled_from([{}, {"bb": 1, "a": [1, None]}, {"k": "v"}]),
    },
)
query_strategy = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from(["x", "y", "", "z"]),
        "external_subscription_id": st.sampled_from(["s1", "s2", "", "s3"]),
        "timestamp_from": st.sampled_from(BOUNDS),
        "timestamp_to": st.sampled_from(BOUNDS),
        "page": st.sampled_from(["1", "2", "3", "7", "0", "-1", "x"]),
        "per_page": st.sampled_from(["1", "2", "3", "100", "0", "abc"]),
    },
)
operation = st.one_of(
    st.tuples(st.just("post"), params_strategy, st.sampled_from(RECEPTIONS)),
    st.tuples(st.just("batch"), st.lists(params_strategy, min_size=1, max_size=4),
              st.sampled_from(RECEPTIONS)),
    st.tuples(st.just("list"), query_strategy, st.sampled_from([None, 1, 2])),
)  # fmt: skip


@given(
    kind=st.sampled_from(list(Store)),
    legacy=st.booleans(),
    operations=st.lists(operation, max_size=25),
)
def test_listings_answer_as_a_full_scan_would(
    kind: Store, legacy: bool, operations: list[tuple[Any, ...]]
) -> None:
    store = EventStore(kind, legacy_partial_batches=legacy, organization_id="org")
    for name, argument, extra in operations:
        if name == "list":
            assert same(
                store.list_events(argument, per_page_cap=extra), scanned(store, argument, extra)
            )
            continue
        at = RECEIVED + dt.timedelta(microseconds=extra)
        if name == "post":
            store.create(argument, at)
        else:
            store.create_batch(argument, at)
    for query in ({}, {"per_page": "1000"}, {"code": "x", "per_page": "2", "page": "2"}):
        assert same(store.list_events(query), scanned(store, query))


def iso_ms(milliseconds: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=milliseconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("kind", list(Store))
def test_listings_of_a_larger_store_answer_as_a_full_scan_would(kind: Store) -> None:
    rng = random.Random(7)
    store = EventStore(kind, organization_id="org")
    instants = [SECONDS * 1000 + rng.randrange(3600 * 1000) for _ in range(300)]  # ties
    for index in range(3000):
        params = event(
            f"t-{rng.randrange(2500):04d}",
            code=rng.choice(["x", "y"]),
            external_subscription_id=rng.choice(["s1", "s2", "s3", None]),
        )
        if rng.random() < 0.8:
            instant = rng.choice(instants)
            params["timestamp"] = f"{instant // 1000}.{instant % 1000:03d}"
        store.create(params, RECEIVED + dt.timedelta(milliseconds=rng.randrange(500)))
        if index % 1000 == 999:  # listings in between: the index must see what came since
            queries = [{"per_page": "100", "page": str(rng.randrange(1, 40))} for _ in range(5)]
            for query in queries:
                assert same(store.list_events(query), scanned(store, query))
    for _ in range(300):
        since, until = rng.choice(instants), rng.choice(instants)  # inverted half the time
        query = {
            "timestamp_from": iso_ms(since + rng.choice([0, 0, -1, 1])),
            "timestamp_to": iso_ms(until + rng.choice([0, 0, -1, 1])),
            "per_page": str(rng.choice([1, 7, 50, 2000])),
            "page": str(rng.randrange(1, 5)),
        }
        if rng.random() < 0.7:
            query["code"] = rng.choice(["x", "y", "z"])
        if rng.random() < 0.5:
            query["external_subscription_id"] = rng.choice(["s1", "s2", "s3", ""])
        for name in ("timestamp_from", "timestamp_to"):
            if rng.random() < 0.2:
                del query[name]
        cap = rng.choice([None, 30])
        assert same(store.list_events(query, per_page_cap=cap), scanned(store, query, cap))


@pytest.mark.parametrize("kind", list(Store))
def test_a_listing_serializes_only_its_page_and_sorts_only_after_inserts(
    kind: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialized: list[str | None] = []
    rebuilds: list[int] = []
    serializer = "stored_postgres" if kind is Store.POSTGRES else "stored_clickhouse"
    original = getattr(emulator_store, serializer)
    rebuild = EventIndex._rebuild

    def counted(event: Any, *args: Any) -> Any:
        serialized.append(event.transaction_id)
        return original(event, *args)

    def counted_rebuild(index: EventIndex) -> None:
        rebuilds.append(index.version)
        rebuild(index)

    monkeypatch.setattr(emulator_store, serializer, counted)
    monkeypatch.setattr(EventIndex, "_rebuild", counted_rebuild)
    store = EventStore(kind)
    store.preload(
        (event(f"t-{i:03d}", timestamp=SECONDS + i) for i in range(300)), received=RECEIVED
    )
    third_page = range(279, 269, -1) if kind is Store.POSTGRES else range(20, 30)  # by reception
    assert listed(store, per_page="10", page="3") == [f"t-{i:03d}" for i in third_page]
    assert (len(serialized), rebuilds) == (10, [300])
    listed(store, per_page="10", page="3")
    listed(store, per_page="20", page="2", code="tokens")
    assert (len(serialized), rebuilds) == (20, [300])  # 10 new ones: rows 20 to 29
    created(store, event("t-new", timestamp=SECONDS + 1000), RECEIVED + dt.timedelta(seconds=1))
    assert listed(store, per_page="1") == ["t-new"]
    assert rebuilds == [300, 301]


def posted(store: EventStore, params: Any, received: dt.datetime) -> Reply:
    """A single POST /api/v1/events, JSON and Rails included, without a socket."""
    headers = {"authorization": "Bearer k", "content-type": "application/json"}
    body = json.dumps({"event": params}).encode()
    return answer(
        Request("POST", "/api/v1/events", headers, body), store, api_key="k", received=received
    )


def without_ids(store: EventStore) -> list[dict[str, Any]]:
    """Stored events, Postgres' random lago_id left out."""
    if store.store is Store.CLICKHOUSE:
        return store.stored_events()
    return [{**shown, "lago_id": None} for shown in store.stored_events()]


@given(
    kind=st.sampled_from(list(Store)),
    events=st.lists(
        st.tuples(
            st.one_of(
                params_strategy, st.just({}), st.sampled_from([{"timestamp": "x"}, {"code": "c"}])
            ),
            st.sampled_from(RECEPTIONS),
        ),
        max_size=12,
    ),
)
def test_preload_stores_and_refuses_what_single_posts_do(
    kind: Store, events: list[tuple[dict[str, Any], int]]
) -> None:
    by_post, by_preload = (EventStore(kind, organization_id="org") for _ in range(2))
    times = [RECEIVED + dt.timedelta(microseconds=offset) for _, offset in events]
    refused = None
    for index, ((params, _), at) in enumerate(zip(events, times, strict=True)):
        reply = posted(by_post, params, at)
        if reply.status != 200:
            refused = index, params, reply
            break
    reception = iter(times)
    sent = [params for params, _ in events]
    if refused is None:
        assert by_preload.preload(sent, received=lambda _: next(reception)) == len(events)
    else:
        index, params, reply = refused
        message = (
            f"event {index} (transaction_id {params.get('transaction_id')!r}) refused: "
            f"Lago answers {reply.status} {reply.body}"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            by_preload.preload(sent, received=lambda _: next(reception))
    assert without_ids(by_preload) == without_ids(by_post)


def test_preload_refuses_what_rails_refuses() -> None:
    store = EventStore()
    with pytest.raises(ValueError, match=r"event 1 .* 400 .*param is missing"):
        store.preload([event("a"), {}])
    with pytest.raises(
        ValueError, match=r"event 0 \(transaction_id None\) refused: Lago answers 500"
    ):
        store.preload(["not an object"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="value_already_exist"):
        store.preload(
            [event("b", external_subscription_id="s"), event("b", external_subscription_id="s")]
        )
    assert [shown["transaction_id"] for shown in store.stored_events()] == ["a", "b"]


def test_preload_stamps_reception_time() -> None:
    store = EventStore(Store.CLICKHOUSE)
    assert store.preload([event("a")], received=RECEIVED) == 1
    before = dt.datetime.now(dt.UTC)
    assert store.preload(iter([event("b"), event("c", timestamp=SECONDS)])) == 2
    after = dt.datetime.now(dt.UTC)
    a, b, c = store.stored_events()
    assert (a["timestamp"], a["created_at"]) == (RECEIVED_TEXT, "2026-11-01T12:00:00Z")
    stamped = dt.datetime.fromisoformat(b["timestamp"])
    assert before - dt.timedelta(milliseconds=1) <= stamped <= after
    assert c["timestamp"] == "2024-01-01T00:00:00.000Z"
    assert c["created_at"] == b["created_at"]  # one time for all when none is given


@given(
    st.one_of(
        st.from_regex(r"\d{1,17}(\.\d{0,9})?", fullmatch=True),
        st.integers(-(10**17), 10**17),
        st.sampled_from(["0", "000000000000000000001.5", "9999999999999999", "1.", "12.9999999"]),
    )
)
def test_plain_timestamps_cast_as_bigdecimal_does(value: str | int) -> None:
    seconds = Decimal(str(value))
    if seconds.adjusted() > 15:
        with pytest.raises(Unrescued):
            cast_timestamp(value, 0)
        return
    with localcontext(Context(prec=100)):
        expected = int((seconds * 10**6).to_integral_value(rounding=ROUND_FLOOR))
    assert cast_timestamp(value, 0) == expected


def test_random_uuids_are_version_4() -> None:
    for _ in range(2000):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_preloaded_events_keep_no_reference_to_what_was_given() -> None:
    store = EventStore()
    params = event("a", properties={"tags": ["x"], "n": 1})
    store.preload([params], received=RECEIVED)
    params["properties"]["tags"].append("y")
    params["properties"]["n"] = 2
    assert store.stored_events()[0]["properties"] == {"n": 1, "tags": ["x"]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)  # fmt: skip


@given(json_values)
def test_clickhouse_map_values_are_strings_as_is_and_json_otherwise(value: Any) -> None:
    expected = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    assert map_string(value) == ("" if value is None else expected)
