"""The pure store behind the Lago emulator, case by case against lago-api v1.51.0's source."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pytest

from reconcile.lago.emulator_store import MAX_BATCH, EventStore, Reply, Store
from reconcile.lago.emulator_values import parse_iso8601

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
    assert len(store.list_events({}).body["events"]) == 3


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
    assert len(reply.body["events"]) == len(store.stored_events()) == MAX_BATCH


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
    assert [shown["lago_id"] for shown in reply.body["events"]] == [None, None]
    assert len(store.stored_events()) == 2


# EventsQuery
def listed(store: EventStore, **query: str) -> list[str]:
    reply = store.list_events(query)
    assert reply.status == 200, reply
    return [shown["transaction_id"] for shown in reply.body["events"]]


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
    assert len(reply.body["events"]) == page_size
    names = ("current_page", "next_page", "prev_page", "total_pages", "total_count")
    assert reply.body["meta"] == dict(zip(names, meta, strict=True))


def test_per_page_zero_with_results_is_kaminaris_500() -> None:
    store = EventStore()
    created(store, event())
    assert store.list_events({"per_page": "0"}).status == 500
