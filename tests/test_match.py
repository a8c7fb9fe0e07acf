"""Matching rows to Lago events: a table of cases, and the exactly-once property across windows."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.matching import EventStatus, MatchSettings, RowStatus, match

SECOND = 1000
MINUTE = 60 * SECOND
SETTINGS = MatchSettings(
    since_ms=0, until_ms=3600 * SECOND, skew_ms=2 * MINUTE, max_delay_ms=20 * MINUTE
)


def rows_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {"model": "gpt-4o-mini", "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "cost": 0.000027, "subscription": "cust_a", "in_window": True}  # fmt: skip
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["request_id"] = frame.get("request_id", frame["transaction_id"].str.replace("rc1", "req"))
    return frame.astype(
        {"prompt_tokens": "Int64", "completion_tokens": "Int64", "total_tokens": "Int64"}
    )


def events_frame(*events: dict[str, Any]) -> pd.DataFrame:
    base = {"model": "gpt-4o-mini", "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "cost": 0.000027, "subscription": "cust_a"}  # fmt: skip
    frame = pd.DataFrame(
        [{**base, **event} for event in events], columns=[*base, "transaction_id", "timestamp_ms"]
    )
    return frame.astype(
        {"prompt_tokens": "Int64", "completion_tokens": "Int64", "total_tokens": "Int64"}
    )


def statuses(rows: pd.DataFrame, events: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    result = match(rows, events, SETTINGS)
    return (
        [str(status) for status in result.rows["status"]],
        [str(status) for status in result.events["status"]],
        [str(reason) for reason in result.events["reason"]],
    )


CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], list[str], list[str]]] = {
    "our own event, by transaction id": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND}],
        ["billed"], ["matched"], [""],
    ),
    "the callback's event, by fingerprint": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "random-uuid", "timestamp_ms": 60 * SECOND + 300}],
        ["billed"], ["matched"], [""],
    ),
    "two identical requests, one event: the earlier row is missing": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}, {"transaction_id": "rc1-b", "end_ms": 63 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 63 * SECOND + 250}],
        ["missing", "billed"], ["matched"], [""],
    ),
    "two identical requests, two events": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}, {"transaction_id": "rc1-b", "end_ms": 63 * SECOND}],
        [{"transaction_id": "uuid-2", "timestamp_ms": 63 * SECOND + 250},
         {"transaction_id": "uuid-1", "timestamp_ms": 60 * SECOND + 250}],
        ["billed", "billed"], ["matched", "matched"], ["", ""],
    ),
    "an event later than max_delay is another request's": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 60 * SECOND + 21 * MINUTE}],
        ["missing"], ["unexplained"], ["no such request"],
    ),
    "an event earlier than the skew allows": (
        [{"transaction_id": "rc1-a", "end_ms": 10 * MINUTE}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 10 * MINUTE - 3 * MINUTE}],
        ["missing"], ["unexplained"], ["no such request"],
    ),
    "an event within the skew, before endTime": (
        [{"transaction_id": "rc1-a", "end_ms": 10 * MINUTE}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 10 * MINUTE - 1 * MINUTE}],
        ["billed"], ["matched"], [""],
    ),
    "an event without token counts matches on model and cost": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND,
          "prompt_tokens": None, "completion_tokens": None, "total_tokens": None}],
        ["billed"], ["matched"], [""],
    ),
    "other token counts are not the same request": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "completion_tokens": 21, "total_tokens": 121}],
        ["missing"], ["unexplained"], ["property mismatch"],
    ),
    "another model is not the same request": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "model": "gpt-4o"}],
        ["missing"], ["unexplained"], ["property mismatch"],
    ),
    "a cost within 1e-9 relative is the same": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND, "cost": 0.000027}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "cost": 0.000027 * (1 + 1e-12)}],
        ["billed"], ["matched"], [""],
    ),
    "a cost off by 1e-6 relative is not": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND, "cost": 0.000027}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "cost": 0.000027 * (1 + 1e-6)}],
        ["missing"], ["unexplained"], ["property mismatch"],
    ),
    "a Bedrock row whose provider LiteLLM left empty still meets the bare model": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND, "model": "bedrock/us.acme.claude-x",
          "custom_llm_provider": ""}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "model": "us.acme.claude-x"}],
        ["billed"], ["matched"], [""],
    ),
    "a route only the row's own provider names is stripped from the row": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND, "model": "acme-gw/chat",
          "custom_llm_provider": "acme-gw"}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "model": "chat"}],
        ["billed"], ["matched"], [""],
    ),
    "an event whose cost Lago cannot sum bills nothing": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "cost": float("inf")}],
        ["missing"], ["unexplained"], ["property mismatch"],
    ),
    "an event without a cost (a model LiteLLM cannot price) matches on the rest": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "cost": np.nan}],
        ["billed"], ["matched"], [""],
    ),
    "another subscription is not the same request": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 61 * SECOND, "subscription": "cust_b"}],
        ["missing"], ["unexplained"], ["no such request"],
    ),
    "ClickHouse copies of one event bill once": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND}, {"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND}],
        ["billed"], ["matched", "copy"], ["", ""],
    ),
    "a resend with another timestamp bills twice": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND}, {"transaction_id": "rc1-a", "timestamp_ms": 61 * SECOND}],
        ["billed"], ["matched", "unexplained"], ["", "duplicate"],
    ),
    "a callback event for a request we already backfilled is a duplicate": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND}, {"transaction_id": "uuid-1", "timestamp_ms": 60 * SECOND + 400}],
        ["billed"], ["matched", "unexplained"], ["", "duplicate"],
    ),
    "two callback events for one request: one is a duplicate": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-2", "timestamp_ms": 60 * SECOND + 900}, {"transaction_id": "uuid-1", "timestamp_ms": 60 * SECOND + 400}],
        ["billed"], ["unexplained", "matched"], ["duplicate", ""],
    ),
    "our transaction id under another subscription bills nothing of this one's": (
        [{"transaction_id": "rc1-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "rc1-a", "timestamp_ms": 60 * SECOND, "subscription": "team-ml"}],
        ["missing"], ["unexplained"], ["property mismatch"],
    ),
    "equal end times: the smaller request_id wins": (
        [{"transaction_id": "rc1-b", "request_id": "req-b", "end_ms": 60 * SECOND},
         {"transaction_id": "rc1-a", "request_id": "req-a", "end_ms": 60 * SECOND}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 60 * SECOND + 10}],
        ["missing", "billed"], ["matched"], [""],
    ),
    "a row outside the window keeps its event; the event is the neighbour's": (
        [{"transaction_id": "rc1-a", "end_ms": 3600 * SECOND + 5 * SECOND, "in_window": False}],
        [{"transaction_id": "uuid-1", "timestamp_ms": 3600 * SECOND - 10}],
        ["billed"], ["neighbour"], [""],
    ),
    "a row outside the window without an event is not ours to backfill": (
        [{"transaction_id": "rc1-a", "end_ms": 3600 * SECOND + 5 * SECOND, "in_window": False}],
        [],
        ["neighbour"], [], [],
    ),
    "an event outside the window without a row is not ours to explain": (
        [],
        [{"transaction_id": "uuid-1", "timestamp_ms": 3600 * SECOND + 5 * MINUTE}],
        [], ["outside"], [""],
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "events", "row_status", "event_status", "reasons"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_matching_rules(
    rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    row_status: list[str],
    event_status: list[str],
    reasons: list[str],
) -> None:
    assert statuses(rows_frame(*rows) if rows else empty_rows(), events_frame(*events)) == (
        row_status,
        event_status,
        reasons,
    )


def empty_rows() -> pd.DataFrame:
    return rows_frame({"transaction_id": "x", "end_ms": 0}).iloc[0:0].reset_index(drop=True)


def test_closest_in_time_wins_among_many_identical_requests() -> None:
    ends = [60 * SECOND + gap for gap in (0, 2000, 4000, 6000, 8000)]
    rows = rows_frame(
        *({"transaction_id": f"rc1-{index}", "end_ms": end} for index, end in enumerate(ends))
    )
    events = events_frame(
        *(
            {"transaction_id": f"uuid-{index}", "timestamp_ms": ends[index] + 150}
            for index in (4, 1, 3)
        )
    )
    result = match(rows, events, SETTINGS)
    assert list(result.rows["status"]) == ["missing", "billed", "missing", "billed", "billed"]
    assert list(result.events["row"]) == [4, 1, 3]


def test_a_busy_hour_matches_every_callback_event() -> None:
    """200,000 rows, 98% with a callback event, many of them alike (the benchmark times 1M)."""
    count = 200_000
    rng = np.random.default_rng(3)
    ends = np.sort(rng.integers(0, 3600 * SECOND, count))
    rows = pd.DataFrame({
        "transaction_id": [f"rc1-{i}" for i in range(count)], "request_id": [f"req-{i:07d}" for i in range(count)],
        "subscription": rng.choice([f"cust_{i}" for i in range(300)], count), "model": "gpt-4o-mini",
        "prompt_tokens": rng.integers(1, 50, count), "completion_tokens": rng.integers(0, 5, count),
        "cost": 0.0, "end_ms": ends, "in_window": True,
    })  # fmt: skip
    rows["total_tokens"] = rows["prompt_tokens"] + rows["completion_tokens"]
    rows["cost"] = rows["prompt_tokens"] * 1.5e-7 + rows["completion_tokens"] * 6e-7
    sent = rng.random(count) < 0.98
    events = (
        rows[sent]
        .drop(columns=["request_id", "in_window"])
        .rename(columns={"end_ms": "timestamp_ms"})
    )
    events = events.assign(transaction_id=[f"uuid-{i}" for i in range(len(events))],
                           timestamp_ms=events["timestamp_ms"] + rng.integers(0, 2000, len(events))).reset_index(drop=True)  # fmt: skip
    result = match(rows, events, SETTINGS)
    assert (result.rows["status"] == RowStatus.BILLED).sum() == sent.sum()
    assert (result.events["status"] == EventStatus.UNEXPLAINED).sum() == 0


def maximum_matching(edges: dict[int, list[int]]) -> int:
    """Size of a maximum bipartite matching (augmenting paths): the oracle."""
    owner: dict[int, int] = {}

    def augment(event: int, seen: set[int]) -> bool:
        for row in edges.get(event, []):
            if row not in seen:
                seen.add(row)
                if row not in owner or augment(owner[row], seen):
                    owner[row] = event
                    return True
        return False

    return sum(augment(event, set()) for event in edges)


@given(
    ends=st.lists(st.integers(0, 40 * MINUTE), min_size=1, max_size=12),
    times=st.lists(st.integers(-5 * MINUTE, 45 * MINUTE), max_size=12),
)
def test_as_many_rows_as_possible_are_billed(ends: list[int], times: list[int]) -> None:
    """Within one fingerprint, the matching is a maximum one: no row is backfilled while an
    event that could bill it goes unused."""
    rows = rows_frame(
        *({"transaction_id": f"rc1-{i}", "end_ms": end} for i, end in enumerate(ends))
    )
    events = (
        events_frame(
            *({"transaction_id": f"uuid-{i}", "timestamp_ms": time} for i, time in enumerate(times))
        )
        if times
        else events_frame().iloc[0:0]
    )
    window = MatchSettings(
        since_ms=-10 * MINUTE, until_ms=60 * MINUTE, skew_ms=2 * MINUTE, max_delay_ms=20 * MINUTE
    )
    result = match(rows, events.reset_index(drop=True), window)
    edges = {
        event: [
            row
            for row, end in enumerate(ends)
            if -window.skew_ms <= time - end <= window.max_delay_ms
        ]
        for event, time in enumerate(times)
    }
    assert (result.rows["status"] == RowStatus.BILLED).sum() == maximum_matching(edges)
    for row, event in enumerate(result.rows["event"]):
        if event >= 0:
            assert -window.skew_ms <= times[event] - ends[row] <= window.max_delay_ms


@pytest.mark.parametrize(("row_count", "event_count"), [(700, 520), (520, 700)])
def test_a_large_burst_is_a_maximum_matching_either_side_larger(
    row_count: int, event_count: int
) -> None:
    """Identical requests every few seconds for an hour, events lacking the model among
    events that have it: one burst beyond the assignment's limit, matched by Hopcroft-Karp
    with the smaller side first, as many rows billed as a maximum matching bills."""
    rng = np.random.default_rng(row_count)
    ends = np.sort(rng.integers(0, 60 * MINUTE, row_count))
    times = np.sort(rng.integers(-MINUTE, 62 * MINUTE, event_count))
    vague = rng.random(event_count) < 0.1
    rows = rows_frame(*({"transaction_id": f"rc1-{i}", "end_ms": int(end)}
                        for i, end in enumerate(ends)))  # fmt: skip
    events = events_frame(*({"transaction_id": f"uuid-{i}", "timestamp_ms": int(time),
                             "model": None if vague[i] else "gpt-4o-mini"}
                            for i, time in enumerate(times)))  # fmt: skip
    result = match(rows, events, SETTINGS)
    edges = {
        event: np.flatnonzero(
            (times[event] - ends >= -SETTINGS.skew_ms)
            & (times[event] - ends <= SETTINGS.max_delay_ms)
        ).tolist()
        for event in range(event_count)
    }
    assert (result.rows["status"] == RowStatus.BILLED).sum() == maximum_matching(edges)
    partner = result.rows["event"].to_numpy()
    for row in np.flatnonzero(partner >= 0):
        assert row in edges[int(partner[row])]
