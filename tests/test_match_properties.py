"""The matcher on generated inputs: any dtype, empty and all-null columns, chunked Arrow data,
unknown properties, costs alike only within the tolerance. It never fails, every pair it makes
is allowed, and it bills as many rows as a maximum matching can."""

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from test_match import maximum_matching

from reconcile.matching import MatchSettings, match
from reconcile.matching.models import PROVIDERS
from reconcile.settings import TOKENS

SECOND = 1000
MINUTE = 60 * SECOND
SETTINGS = MatchSettings(
    since_ms=0, until_ms=3600 * SECOND, skew_ms=2 * MINUTE, max_delay_ms=20 * MINUTE
)
BASE = 0.0042
EPSILON = 0.6e-9 * BASE  # within the tolerance of a neighbour, not of the one after


def cost_values() -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.sampled_from([BASE + k * EPSILON for k in range(4)] + [0.001]))


def row_dicts(draw: st.DrawFn, count: int) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"rc1-{index}",
            "request_id": f"req-{index:03d}",
            "subscription": draw(st.sampled_from(["a", "b"])),
            "model": draw(st.sampled_from(["m", "bedrock/m", "acme/m", "", None])),
            "custom_llm_provider": draw(st.sampled_from(["bedrock", "acme", "", None])),
            "prompt_tokens": draw(st.sampled_from([10, 11])),
            "completion_tokens": 5,
            "total_tokens": 15,
            "cost": draw(st.sampled_from([BASE + k * EPSILON for k in range(4)])),
            "end_ms": draw(st.integers(-5 * MINUTE, 70 * MINUTE)),
            "in_window": draw(st.booleans()),
        }
        for index in range(count)
    ]


def event_dicts(draw: st.DrawFn, count: int) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": draw(st.sampled_from([f"uuid-{index}", f"rc1-{index}"])),
            "subscription": draw(st.sampled_from(["a", "b", None])),
            "model": draw(st.sampled_from(["m", None, "", "bedrock/m", "n"])),
            "prompt_tokens": draw(st.sampled_from([10, 11, None])),
            "completion_tokens": draw(st.sampled_from([5, None])),
            "total_tokens": draw(st.sampled_from([15, None])),
            "cost": draw(cost_values()),
            "timestamp_ms": draw(st.integers(-10 * MINUTE, 80 * MINUTE)),
        }
        for index in range(count)
    ]


@st.composite
def inputs(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.DataFrame(row_dicts(draw, draw(st.integers(0, 8))),
                        columns=["transaction_id", "request_id", "subscription", "model",
                                 "custom_llm_provider", *TOKENS, "cost", "end_ms", "in_window"])  # fmt: skip
    events = pd.DataFrame(event_dicts(draw, draw(st.integers(0, 8))),
                          columns=["transaction_id", "subscription", "model", *TOKENS, "cost",
                                   "timestamp_ms"])  # fmt: skip
    for frame, nullable in ((rows, ["model", "custom_llm_provider"]),
                            (events, ["subscription", "model", *TOKENS, "cost"])):  # fmt: skip
        for name in nullable:
            if draw(st.booleans()) and draw(st.booleans()):
                frame[name] = None  # a column that is all null
    return rows, events


def represent(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """The same data under another dtype: objects, categories, or chunked Arrow columns."""
    if how == "object":
        return frame.astype(object).where(frame.notna(), None)
    converted = {}
    for name, column in frame.items():
        if how == "category" and column.dtype == object:
            converted[name] = column.astype("category")
        elif how == "arrow":
            array = pa.array(column, from_pandas=True)
            middle = len(array) // 2
            chunked = pa.chunked_array([array[:middle], array[middle:]], type=array.type)
            converted[name] = pd.Series(pd.arrays.ArrowExtensionArray(chunked), name=name)
        else:
            converted[name] = column
    return pd.DataFrame(converted)


def model(name: Any, own: Any = None) -> str | None:
    """The rule, written out: a name less its row's own route, then less any provider route."""
    if not isinstance(name, str) or not name:
        return None
    if isinstance(own, str) and own and name.startswith(own + "/") and name != own + "/":
        name = name[len(own) + 1 :]
    head, _, rest = name.partition("/")
    return model(rest) if rest and head in PROVIDERS else name


def allowed(row: pd.Series, event: pd.Series) -> bool:
    """The matching rule, written out: nulls are unknown; models without their routes."""
    if pd.isna(event["subscription"]) or event["subscription"] != row["subscription"]:
        return False
    gap = event["timestamp_ms"] - row["end_ms"]
    if not -SETTINGS.skew_ms <= gap <= SETTINGS.max_delay_ms:
        return False
    row_model = model(row["model"], row["custom_llm_provider"])
    event_model = model(event["model"])
    if row_model and event_model and row_model != event_model:
        return False
    for name in TOKENS:
        if not pd.isna(event[name]) and event[name] != row[name]:
            return False
    if pd.isna(event["cost"]):
        return True
    larger = max(abs(row["cost"]), abs(event["cost"]))
    return bool(abs(row["cost"] - event["cost"]) <= SETTINGS.cost_tolerance * larger)


@given(data=inputs(), how=st.sampled_from(["as built", "object", "category", "arrow"]))
def test_any_input_matches_and_every_pair_is_allowed(
    data: tuple[pd.DataFrame, pd.DataFrame], how: str
) -> None:
    rows, events = data
    result = match(represent(rows, how), represent(events, how), SETTINGS)
    reference = match(rows, events, SETTINGS)
    assert list(result.rows["status"]) == list(reference.rows["status"])
    assert list(result.events["status"]) == list(reference.events["status"])
    assert list(result.events["reason"]) == list(reference.events["reason"])
    partners = result.rows["event"].to_numpy()
    assert len(set(partners[partners >= 0])) == int((partners >= 0).sum())
    for position, event in enumerate(partners):
        if event < 0:
            continue
        assert result.events["row"].iloc[event] == position
        if result.rows["matched_by"].iloc[position] == "fingerprint":
            assert allowed(rows.iloc[position], events.iloc[event])
        else:
            assert events["transaction_id"].iloc[event] == rows["transaction_id"].iloc[position]
            assert events["subscription"].iloc[event] == rows["subscription"].iloc[position]


@given(data=inputs())
def test_as_many_rows_are_billed_as_a_maximum_matching_allows(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Costs alike only pairwise (A+2e with A+e and A+3e, A only with A+e), events lacking
    fields beside events that have them: no row is left missing that an unused event could
    bill."""
    rows, events = data
    events = events.assign(transaction_id=[f"uuid-{index}" for index in range(len(events))])
    result = match(rows, events, SETTINGS)
    edges = {
        event: [row for row in range(len(rows)) if allowed(rows.iloc[row], events.iloc[event])]
        for event in range(len(events))
    }
    assert (result.rows["event"] >= 0).sum() == maximum_matching(edges)


def test_costs_alike_only_in_a_chain_still_pair_both() -> None:
    """Rows costing A+2e and A, events A+e and A+3e (e = 0.6e-9 A): two pairs, not one."""
    rows = pd.DataFrame({"transaction_id": ["rc1-0", "rc1-1"], "request_id": ["r0", "r1"],
                         "subscription": "a", "model": "m", "prompt_tokens": 10,
                         "completion_tokens": 5, "total_tokens": 15,
                         "cost": [BASE + 2 * EPSILON, BASE], "end_ms": [60_000, 61_000],
                         "in_window": True})  # fmt: skip
    events = pd.DataFrame({"transaction_id": ["uuid-0", "uuid-1"], "subscription": "a",
                           "model": "m", "prompt_tokens": 10, "completion_tokens": 5,
                           "total_tokens": 15, "cost": [BASE + EPSILON, BASE + 3 * EPSILON],
                           "timestamp_ms": [60_500, 61_500]})  # fmt: skip
    result = match(rows, events, SETTINGS)
    assert list(result.rows["status"]) == ["billed", "billed"]
    assert list(result.rows["event"]) == [1, 0]


def test_an_empty_side_and_all_null_columns_are_fine() -> None:
    empty_rows = pd.DataFrame(columns=["transaction_id", "request_id", "subscription", "model",
                                       *TOKENS, "cost", "end_ms", "in_window"])  # fmt: skip
    events = pd.DataFrame({"transaction_id": ["uuid-0"], "subscription": ["a"], "model": [None],
                           **{name: [None] for name in TOKENS}, "cost": [np.nan],
                           "timestamp_ms": [60_000]})  # fmt: skip
    result = match(empty_rows, events, SETTINGS)
    assert list(result.events["reason"]) == ["no such request"]
    result = match(empty_rows, events.iloc[0:0].reset_index(drop=True), SETTINGS)
    assert result.rows.empty
    assert result.events.empty
