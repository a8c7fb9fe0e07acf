"""Events from rows: exact costs and times, safe JSON, CSV, and Lago's own contract."""

import csv
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lago_openapi import errors as openapi_errors

from reconcile.build_events import (
    CSV_COLUMNS,
    build_events,
    json_escaped,
    json_lines,
    plain_decimal,
    unix_seconds_text,
    write_csv,
    write_jsonl,
)
from reconcile.postgres import Database, connect
from reconcile.spendlogs.read import SPEND_ROW_SCHEMA
from reconcile.transaction_id import transaction_id

PLAIN = re.compile(r"^-?\d+(\.\d+)?$")  # what Lago's sum aggregation accepts


@pytest.mark.parametrize(
    ("postgres_text", "plain"),
    [
        ("1.5e-05", "0.000015"),
        ("1e-05", "0.00001"),
        ("-2.75e-07", "-0.000000275"),
        ("9.999999999999999e-05", "0.00009999999999999999"),
        ("5e-324", "0." + "0" * 323 + "5"),
        ("0.0001", "0.0001"),
        ("0", "0"),
        ("-0", "-0"),
        ("12.5", "12.5"),
        ("1e+15", "1000000000000000"),
        ("1.2345678901234567e+15", "1234567890123456.7"),
    ],
)
def test_costs_become_plain_decimals_digit_for_digit(postgres_text: str, plain: str) -> None:
    assert plain_decimal(pa.array([postgres_text, "0.5"])).to_pylist() == [plain, "0.5"]
    assert PLAIN.match(plain)


def test_every_double_postgres_can_print_becomes_the_same_plain_number(pg_admin: Database) -> None:
    """Ground truth from Postgres itself: its text of 20,000 doubles across every magnitude."""
    with connect(pg_admin) as connection:
        rows = connection.execute(
            "SELECT x, x::text FROM (SELECT (random() * 10 - 5) * power(10::float8, -(g % 30)) AS x"
            " FROM generate_series(1, 20000) AS g) AS sample"
        ).fetchall()
    converted = plain_decimal(pa.array([text for _, text in rows])).to_pylist()
    for (value, text), plain in zip(rows, converted, strict=True):
        assert PLAIN.match(plain), (text, plain)
        assert Decimal(plain) == Decimal(repr(value)), (text, plain)
        assert float(plain) == value


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (1793491201586, "1793491201.586"),
        (1793491201000, "1793491201.000"),
        (5, "0.005"),
        (-1, "-0.001"),
        (-1500, "-1.500"),
    ],
)
def test_timestamps_are_exact_decimal_seconds(milliseconds: int, text: str) -> None:
    assert unix_seconds_text(pa.array([milliseconds], pa.int64())).to_pylist() == [text]
    assert Decimal(text) == Decimal(milliseconds) / 1000


@given(values=st.lists(st.text(), min_size=1, max_size=20))
def test_escaped_strings_round_trip_through_json(values: list[str]) -> None:
    escaped = json_escaped(pa.array(values, pa.string())).to_pylist()
    assert [json.loads(f'"{inside}"') for inside in escaped] == values


def rows_table(rows: list[dict[str, object]]) -> pa.Table:
    base = {
        "call_id": None, "created_ms": None, "succeeded": True, "model": "gpt-4o-mini",
        "spend": "0.001", "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
    }  # fmt: skip
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=SPEND_ROW_SCHEMA)


AWKWARD = rows_table(
    [
        {"request_id": "chatcmpl-2", "call_id": "call-b", "start_ms": 2000, "end_ms": 2500,
         "charge_by_id": 'acme "beta" \\ tools', "spend": "1.5e-05", "model": "text-embedding-3-small",
         "completion_tokens": 0, "total_tokens": 10},
        {"request_id": "chatcmpl-1", "call_id": "call-a", "start_ms": 1000, "end_ms": 61001,
         "charge_by_id": "客户-北京\n\t", "spend": "0"},
        {"request_id": "r" * 200 + "_cache_hit1793491201", "call_id": None, "start_ms": 1000, "end_ms": 1001,
         "charge_by_id": "x" * 200, "spend": "12.25"},
    ]
)  # fmt: skip


def test_events_carry_what_lago_needs_in_start_time_order() -> None:
    events = [
        json.loads(line) for line in json_lines(build_events(AWKWARD, "openai_tokens")).to_pylist()
    ]
    assert [event["properties"]["litellm_request_id"] for event in events] == [
        "chatcmpl-1",
        "r" * 200 + "_cache_hit1793491201",
        "chatcmpl-2",
    ]
    first, second, third = events
    assert first == {
        "transaction_id": transaction_id("openai_tokens", request_id="chatcmpl-1", call_id="call-a", start_ms=1000),
        "external_subscription_id": "客户-北京\n\t",
        "code": "openai_tokens",
        "timestamp": "61.001",
        "properties": {
            "model": "gpt-4o-mini", "response_cost": "0", "prompt_tokens": 10, "completion_tokens": 5,
            "total_tokens": 15, "input_tokens": 10, "output_tokens": 5, "litellm_request_id": "chatcmpl-1",
        },
    }  # fmt: skip
    assert second["transaction_id"] == transaction_id(
        "openai_tokens", request_id="r" * 200 + "_cache_hit1793491201", call_id=None, start_ms=1000
    )
    assert second["external_subscription_id"] == "x" * 200
    assert third["external_subscription_id"] == 'acme "beta" \\ tools'
    assert third["properties"]["response_cost"] == "0.000015"
    assert third["timestamp"] == "2.500"


def test_events_validate_against_lagos_openapi_spec(shared_dir: Path) -> None:
    spec_path = shared_dir / "lago" / "openapi.yaml"
    for line in json_lines(build_events(AWKWARD, "openai_tokens")).to_pylist():
        event = json.loads(line)
        assert openapi_errors(spec_path, "EventInputObject", event) == []
        assert openapi_errors(spec_path, "EventInput", {"event": event}) == []
        assert openapi_errors(spec_path, "EventBatchInput", {"events": [event]}) == []


def test_the_spec_bug_our_patch_works_around_is_real(shared_dir: Path) -> None:
    """If Lago fixes its spec, this fails: then drop the patch in lago_openapi.py."""
    event = json.loads(json_lines(build_events(AWKWARD, "openai_tokens")).to_pylist()[0])
    unpatched = openapi_errors(
        shared_dir / "lago" / "openapi.yaml", "EventInputObject", event, patched=False
    )
    assert unpatched
    assert all("prompt_tokens" in line or "tokens" in line for line in unpatched), unpatched


def test_jsonl_and_csv_writers_emit_every_event_once() -> None:
    events = build_events(AWKWARD, "tokens")
    jsonl = io.BytesIO()
    write_jsonl(events, jsonl)
    lines = jsonl.getvalue().decode().splitlines()
    assert [json.loads(line)["transaction_id"] for line in lines] == events.column(
        "transaction_id"
    ).to_pylist()

    table = io.BytesIO()
    write_csv(events, table, header=True)
    parsed = list(csv.DictReader(io.StringIO(table.getvalue().decode())))
    assert tuple(parsed[0]) == CSV_COLUMNS
    assert [row["litellm_request_id"] for row in parsed] == events.column(
        "litellm_request_id"
    ).to_pylist()
    assert parsed[2]["external_subscription_id"] == 'acme "beta" \\ tools'
    assert parsed[0]["external_subscription_id"] == "客户-北京\n\t"
    assert parsed[2]["response_cost"] == "0.000015"
    assert parsed[2]["timestamp"] == "2.500"
    assert parsed[2]["input_tokens"] == parsed[2]["prompt_tokens"] == "10"


def test_no_rows_no_events() -> None:
    events = build_events(AWKWARD.slice(0, 0), "tokens")
    assert events.num_rows == 0
    assert json_lines(events).to_pylist() == []


@given(costs=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_any_finite_cost_survives_the_trip_into_the_event(costs: list[float]) -> None:
    texts = [repr(cost) for cost in costs]  # the same shortest-digits style Postgres prints
    for text, plain, cost in zip(
        texts, plain_decimal(pa.array(texts)).to_pylist(), costs, strict=True
    ):
        assert PLAIN.match(plain), (text, plain)
        assert Decimal(plain) == Decimal(text)
        assert float(plain) == cost


def _chunked(rows: pa.Table) -> pa.Table:
    """The same rows as one chunk per row, as a streamed read can hand them over."""
    return pa.concat_tables([rows.slice(index, 1) for index in range(rows.num_rows)])


#: A spend-log column that may hold NULL -> where its value lands in the event.
NULLABLE = {
    "model": ("properties", "model"),
    "spend": ("properties", "response_cost"),
    "prompt_tokens": ("properties", "prompt_tokens"),
    "completion_tokens": ("properties", "completion_tokens"),
    "total_tokens": ("properties", "total_tokens"),
    "charge_by_id": (None, "external_subscription_id"),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["one chunk", "chunked"])
@pytest.mark.parametrize("everywhere", [False, True], ids=["one row", "all rows"])
@pytest.mark.parametrize("name", list(NULLABLE))
def test_a_null_value_is_written_as_null_and_the_line_is_kept(
    name: str, everywhere: bool, chunked: bool
) -> None:
    # LiteLLM's schema says NOT NULL, but a table made by an older release or altered by hand
    # may hold NULLs: one must never turn the whole line into a null (a null concatenation).
    nulled = [everywhere or index == 1 for index in range(3)]
    rows = rows_table(
        [
            {"request_id": f"chatcmpl-{index}", "start_ms": index, "end_ms": index + 1,
             "charge_by_id": "cust_1", **({name: None} if null else {})}
            for index, null in enumerate(nulled)
        ]
    )  # fmt: skip
    events = build_events(_chunked(rows) if chunked else rows, "tokens")
    lines = json_lines(events).to_pylist()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]  # a null line would raise TypeError here
    part, key = NULLABLE[name]
    values = [(event[part] if part else event)[key] for event in parsed]
    assert [value is None for value in values] == nulled
    if name in ("prompt_tokens", "completion_tokens"):
        alias = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}[name]
        assert [event["properties"][alias] for event in parsed] == values
    sink = io.BytesIO()
    write_jsonl(events, sink)
    assert [json.loads(line) for line in sink.getvalue().decode().splitlines()] == parsed
