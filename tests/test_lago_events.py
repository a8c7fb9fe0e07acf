"""Lago's listed events read into columns: costs as numbers or strings, tokens under either name."""

import json
from typing import Any

import pyarrow as pa
import pytest

from reconcile.lago.events import UNBILLABLE, _table, arrow_page, frame, unquote_numbers
from reconcile.lago.events import Slice as EventSlice


def page(*properties: dict[str, Any]) -> bytes:
    events = [
        {"lago_id": f"l-{index}", "transaction_id": f"t-{index}", "lago_customer_id": None,
         "code": "tokens", "timestamp": "2026-11-01T00:00:01.250Z", "properties": item,
         "external_subscription_id": "cust_1", "created_at": "2026-11-01T00:00:02Z"}
        for index, item in enumerate(properties)
    ]  # fmt: skip
    meta = {"current_page": 1, "next_page": None, "total_count": len(events)}
    return json.dumps({"events": events, "meta": meta}, separators=(",", ":")).encode()


MIXED = page(
    {"model": "m", "response_cost": 0.00027, "prompt_tokens": 10, "completion_tokens": 2,
     "total_tokens": 12},
    {"model": "m", "response_cost": "0.0000150", "input_tokens": 10, "output_tokens": 2},
    {"model": None, "response_cost": "-1.5e-05", "prompt_tokens": "7"},
    {"response_cost": None},
    {},
)  # fmt: skip


def test_numbers_sent_as_strings_are_read_as_numbers_on_the_fast_path() -> None:
    table, count, meta = arrow_page(MIXED)
    assert (count, meta["total_count"]) == (5, 5)
    assert table.column("response_cost").to_pylist() == [0.00027, 0.000015, -0.000015, None, None]
    assert table.column("prompt_tokens").to_pylist() == [10, None, 7, None, None]
    assert table.column("input_tokens").to_pylist() == [None, 10, None, None, None]
    assert unquote_numbers(MIXED).count(b'"response_cost":"') == 0


def test_the_fast_path_and_the_slow_one_agree() -> None:
    fast, _, _ = arrow_page(MIXED)
    slow = _table(json.loads(MIXED)["events"])
    assert fast.to_pylist() == slow.to_pylist()


@pytest.mark.parametrize("spaces", [False, True])
def test_token_counts_are_read_under_either_name(spaces: bool) -> None:
    content = MIXED.replace(b'":', b'": ') if spaces else MIXED
    table, _, _ = arrow_page(content)
    events = frame([EventSlice(start=None, end=_edge(), pages=[table])])  # type: ignore[arg-type]
    assert events["prompt_tokens"].tolist()[:3] == [10, 10, 7]
    assert events["completion_tokens"].tolist()[:2] == [2, 2]
    assert events["cost"].tolist()[:3] == [0.00027, 0.000015, -0.000015]


def _edge() -> Any:
    import datetime as dt

    return dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_an_empty_page_is_an_empty_table() -> None:
    table, count, _ = arrow_page(page())
    assert (count, table.num_rows) == (0, 0)
    assert table.schema.field("response_cost").type == pa.float64()


@pytest.mark.parametrize(
    ("cost", "read"),
    [("0.5", 0.5), ("1.5e-05", 0.000015), (0.5, 0.5), (None, None), ("n/a", UNBILLABLE),
     ({"usd": 0.5}, UNBILLABLE), (True, UNBILLABLE)],
)  # fmt: skip
def test_a_cost_no_lago_store_can_sum_is_unbillable(cost: object, read: float | None) -> None:
    table, _, _ = arrow_page(page({"model": "m", "response_cost": cost}))
    assert table.column("response_cost").to_pylist() == [read]


@pytest.mark.parametrize("count", [1e30, 99999999999999999999999, "many", -1.5e300, True])
def test_a_token_count_beyond_int64_or_no_count_is_unknown(count: object) -> None:
    content = page({"model": "m", "response_cost": 0.1, "total_tokens": count, "prompt_tokens": 3})
    table, _, _ = arrow_page(content)
    assert table.column("total_tokens").to_pylist() == [None]
    assert table.column("prompt_tokens").to_pylist() == [3]


@pytest.mark.parametrize("spaces", [False, True])
def test_string_costs_never_take_the_python_path(
    spaces: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One string cost on a page (an event reconcile sent, on the Postgres store) must not
    # drop the page to the Python path: 2-3x slower (bench/lago_page_costs.py).
    from reconcile.lago import events

    def python_path(content: bytes) -> Any:
        raise AssertionError("the page fell back to the Python path")

    monkeypatch.setattr(events, "json_page", python_path)
    content = MIXED.replace(b'":', b'": ') if spaces else MIXED
    table, count, _ = arrow_page(content)
    assert count == 5
    assert table.column("response_cost").to_pylist() == [0.00027, 0.000015, -0.000015, None, None]
