"""The forward pass fed slice by slice, cut anywhere, decides exactly as it does given all at once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.matching import MatchResult, MatchSettings, match
from reconcile.matching.stream import StreamMatch
from reconcile.settings import TOKENS

MINUTE = 60_000
SETTINGS = MatchSettings(
    since_ms=30 * MINUTE,
    until_ms=150 * MINUTE,
    skew_ms=MINUTE,
    max_delay_ms=4 * MINUTE,
    block_ms=10 * MINUTE,
)
ROW_COLUMNS = ["transaction_id", "alternate_id", "request_id", "subscription", "model",
               "custom_llm_provider", *TOKENS, "cost", "end_ms", "in_window", "start_ms"]  # fmt: skip
EVENT_COLUMNS = ["transaction_id", "subscription", "model", *TOKENS, "cost", "timestamp_ms"]


@st.composite
def traffic(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows over three hours (some lasting an hour), the callback's events near them (some
    lacking fields, some lost), copies, our own events, and strays."""
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for index in range(draw(st.integers(0, 40))):
        start = draw(st.sampled_from(range(120))) * MINUTE + draw(st.integers(0, MINUTE))
        end = start + draw(st.sampled_from([0, 1_000, 30_000, 10 * MINUTE, 60 * MINUTE]))
        fields = {
            "subscription": draw(st.sampled_from(["a", "b"])),
            "model": draw(st.sampled_from(["m", "m", "n"])),
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "cost": draw(st.sampled_from([0.001, 0.002])),
        }
        row_id = f"rc1-{index:03d}"
        rows.append({"transaction_id": row_id, "alternate_id": None,
                     "request_id": f"req-{index:03d}", "custom_llm_provider": None,
                     "end_ms": end, "start_ms": start,
                     "in_window": SETTINGS.since_ms <= start < SETTINGS.until_ms, **fields})  # fmt: skip
        fate = draw(st.sampled_from(["callback", "callback", "lacking", "ours", "lost", "twice"]))
        if fate == "lost":
            continue
        event = {**fields, "transaction_id": f"uuid-{index:03d}"}
        if fate == "lacking":
            event.update(model=None, prompt_tokens=None, completion_tokens=None, cost=None)
        if fate == "ours":
            event["transaction_id"] = row_id
        offset = 0 if fate == "ours" else draw(st.integers(-MINUTE, 4 * MINUTE))
        events.append({**event, "timestamp_ms": end + offset})
        if fate == "twice":
            events.append({**event, "timestamp_ms": end + offset})  # a ClickHouse copy
    for index in range(draw(st.integers(0, 6))):  # strays: duplicates, mismatches, no request
        near: dict[str, Any] | None = None
        beside_a_row: bool = draw(st.booleans())
        if rows and beside_a_row:
            near = rows[draw(st.integers(0, len(rows) - 1))]
        time = draw(st.integers(0, 200 * MINUTE)) if near is None else near["end_ms"]
        events.append({"transaction_id": f"stray-{index}", "subscription": "a",
                       "model": draw(st.sampled_from(["m", "x"])), "prompt_tokens": 10,
                       "completion_tokens": 5, "total_tokens": 15, "cost": 0.001,
                       "timestamp_ms": time + draw(st.integers(-2 * MINUTE, 5 * MINUTE))})  # fmt: skip
    row_frame = pd.DataFrame(rows, columns=ROW_COLUMNS).sort_values(["start_ms", "request_id"])
    event_frame = pd.DataFrame(events, columns=EVENT_COLUMNS).sort_values(
        "timestamp_ms", kind="stable"
    )
    return row_frame.reset_index(drop=True), event_frame.reset_index(drop=True)


def sliced(
    rows: pd.DataFrame, events: pd.DataFrame, row_cuts: list[int], event_cuts: list[int]
) -> MatchResult:
    """The stream fed in slices: rows by start between row cuts, events by time between event
    cuts, one side or the other ahead by turns."""
    stream = StreamMatch(SETTINGS)
    steps = sorted([(cut, 0) for cut in row_cuts] + [(cut, 1) for cut in event_cuts])
    parts, reached = [], [np.iinfo(np.int64).min] * 2
    for cut, side in steps:
        if cut <= reached[side]:
            continue
        given = [rows.iloc[:0], events.iloc[:0]]
        times = rows["start_ms"] if side == 0 else events["timestamp_ms"]
        frame = rows if side == 0 else events
        given[side] = frame[(times >= reached[side]) & (times < cut)]
        reached[side] = cut
        parts.append(
            stream.add(
                given[0].reset_index(drop=True),
                given[1].reset_index(drop=True),
                rows_until_ms=reached[0],
                events_until_ms=reached[1],
            )
        )
    parts.append(
        stream.add(
            rows[rows["start_ms"] >= reached[0]].reset_index(drop=True),
            events[events["timestamp_ms"] >= reached[1]].reset_index(drop=True),
            rows_until_ms=reached[0],
            events_until_ms=reached[1],
        )
    )
    parts.append(stream.finish())
    return MatchResult(
        rows=pd.concat([part.rows for part in parts]).sort_index(),
        events=pd.concat([part.events for part in parts]).sort_index(),
    )


@settings(deadline=None)
@given(
    data=traffic(),
    row_cuts=st.lists(st.sampled_from(range(-10 * MINUTE, 260 * MINUTE, 3_001)), max_size=8),
    event_cuts=st.lists(st.sampled_from(range(-10 * MINUTE, 260 * MINUTE, 3_001)), max_size=8),
)
def test_slices_cut_anywhere_decide_as_the_whole_window(
    data: tuple[pd.DataFrame, pd.DataFrame], row_cuts: list[int], event_cuts: list[int]
) -> None:
    rows, events = data
    whole = match(rows, events, SETTINGS)
    parts = sliced(rows, events, row_cuts, event_cuts)
    assert list(parts.rows.index) == list(range(len(rows)))  # each decided once
    assert list(parts.events.index) == list(range(len(events)))
    for name in ("status", "event", "matched_by"):
        assert list(parts.rows[name]) == list(whole.rows[name]), name
    for name in ("status", "row", "reason"):
        assert list(parts.events[name]) == list(whole.events[name]), name


@given(data=traffic())
def test_every_row_and_event_is_decided_and_pairs_are_mutual(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    rows, events = data
    result = match(rows, events, SETTINGS)
    partners = result.rows["event"].to_numpy()
    for position, event in enumerate(partners):
        if event >= 0:
            assert result.events["row"].iloc[event] == position
            assert result.rows["status"].iloc[position] == "billed"
        else:
            expected = "missing" if rows["in_window"].iloc[position] else "neighbour"
            assert result.rows["status"].iloc[position] == expected
    ours = result.events["transaction_id"].str.startswith("rc1-")
    assert (result.events.loc[ours, "status"] != "unexplained").all()  # our ids: each its row's


def test_memory_holds_blocks_not_the_window() -> None:
    """A day fed an hour at a time: what is held stays near a few hours of traffic."""
    minute_rows = [
        {"transaction_id": f"rc1-{minute}", "alternate_id": None, "request_id": f"r{minute:05d}",
         "subscription": "a", "model": "m", "custom_llm_provider": None, "prompt_tokens": 1,
         "completion_tokens": 1, "total_tokens": 2, "cost": 0.001, "end_ms": minute * MINUTE,
         "in_window": True, "start_ms": minute * MINUTE}
        for minute in range(24 * 60)
    ]  # fmt: skip
    rows = pd.DataFrame(minute_rows, columns=ROW_COLUMNS)
    events = rows[EVENT_COLUMNS[:-1]].assign(
        transaction_id=[f"uuid-{n}" for n in range(len(rows))], timestamp_ms=rows["end_ms"] + 5
    )
    stream, most, statuses = StreamMatch(SETTINGS), 0, list[str]()
    for hour in range(24):
        low, high = hour * 60 * MINUTE, (hour + 1) * 60 * MINUTE
        decided = stream.add(
            rows[(rows["start_ms"] >= low) & (rows["start_ms"] < high)].reset_index(drop=True),
            events[(events["timestamp_ms"] >= low) & (events["timestamp_ms"] < high)].reset_index(
                drop=True
            ),
            rows_until_ms=high,
            events_until_ms=high,
        )
        statuses.extend(decided.rows["status"])
        most = max(most, *stream.held)
    statuses.extend(stream.finish().rows["status"])
    assert statuses == ["billed"] * len(rows)
    assert most <= 2 * 60 + 30  # about two hours of one request a minute, not the day's 1,440


def _row(name: str, end: int) -> dict[str, Any]:
    return {"transaction_id": f"rc1-{name}", "alternate_id": None, "request_id": name,
            "subscription": "a", "model": "m", "custom_llm_provider": None, "prompt_tokens": 10,
            "completion_tokens": 5, "total_tokens": 15, "cost": 0.001, "end_ms": end,
            "in_window": True, "start_ms": end}  # fmt: skip


def _event(name: str, time: int) -> dict[str, Any]:
    fields = {key: value for key, value in _row(name, 0).items() if key in EVENT_COLUMNS}
    return {**fields, "transaction_id": f"uuid-{name}", "timestamp_ms": time}


def test_a_block_waits_for_the_rows_after_it_that_could_take_its_events() -> None:
    """One event between two alike rows either side of a block's end: the closer, later row
    gets it, however late that row is added."""
    end = 60 * MINUTE  # a block's end
    rows = pd.DataFrame(
        [_row("early", end - MINUTE), _row("late", end + MINUTE)], columns=ROW_COLUMNS
    )
    events = pd.DataFrame([_event("e", end + MINUTE)], columns=EVENT_COLUMNS)
    for result in (match(rows, events, SETTINGS), sliced(rows, events, [end], [end + 20 * MINUTE])):
        assert list(result.rows["status"]) == ["missing", "billed"]


def test_a_stray_is_judged_by_rows_decided_in_an_earlier_block() -> None:
    """A lookalike of a request billed in the block before is a duplicate, not 'no such
    request': decided rows are kept as context for two reaches."""
    end = 60 * MINUTE
    rows = pd.DataFrame([_row("billed", end - 3 * MINUTE)], columns=ROW_COLUMNS)
    events = pd.DataFrame(
        [_event("billed", end - 3 * MINUTE), _event("stray", end + MINUTE // 2)],
        columns=EVENT_COLUMNS,
    )
    for result in (match(rows, events, SETTINGS), sliced(rows, events, [0], [end])):
        assert list(result.events["status"]) == ["matched", "unexplained"]
        assert list(result.events["reason"]) == ["", "duplicate"]


def _outcomes(
    result: MatchResult, rows: pd.DataFrame, events: pd.DataFrame
) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """Per original row and event position: status, partner's original position, how/why.

    `rows` and `events` are the frames the result's numbers refer to, with a `position`."""
    row_at = np.append(rows["position"].to_numpy(dtype=np.int64), -1)  # [-1]: no partner
    event_at = np.append(events["position"].to_numpy(dtype=np.int64), -1)
    decided_rows, decided_events = result.rows, result.events
    return (
        {
            int(row_at[number]): (status, int(event_at[partner]), how)
            for number, status, partner, how in zip(
                decided_rows.index.to_numpy(dtype=np.int64), decided_rows["status"],
                decided_rows["event"].to_numpy(dtype=np.int64), decided_rows["matched_by"],
                strict=True,
            )
        },
        {
            int(event_at[number]): (status, int(row_at[partner]), why)
            for number, status, partner, why in zip(
                decided_events.index.to_numpy(dtype=np.int64), decided_events["status"],
                decided_events["row"].to_numpy(dtype=np.int64), decided_events["reason"],
                strict=True,
            )
        },
    )  # fmt: skip


@settings(deadline=None)
@given(data=traffic(), cut=st.sampled_from(range(0, 260 * MINUTE, 3_001)))
def test_a_pass_resumed_from_its_frontier_decides_the_rest_as_the_whole(
    data: tuple[pd.DataFrame, pd.DataFrame], cut: int
) -> None:
    """Killed after reading to `cut`, a new pass started at the frontier, given the margins
    before it again, decides each row and event left exactly as the whole window does."""
    rows, events = data
    rows, events = (
        rows.assign(position=range(len(rows))),
        events.assign(position=range(len(events))),
    )
    whole = _outcomes(match(rows, events, SETTINGS), rows, events)
    first = StreamMatch(SETTINGS)
    head_rows = rows[rows["start_ms"] < cut].reset_index(drop=True)
    head_events = events[events["timestamp_ms"] < cut].reset_index(drop=True)
    before = _outcomes(
        first.add(head_rows, head_events, rows_until_ms=cut, events_until_ms=cut),
        head_rows,
        head_events,
    )
    frontier = first.frontier()  # None: nothing decided yet, the next pass starts over
    decided_ms, taken = frontier if frontier is not None else (-(1 << 62), ())
    context = decided_ms - 2 * SETTINGS.reach - SETTINGS.block_ms
    second = StreamMatch(SETTINGS)
    if frontier is not None:
        second.resume(decided_ms, taken)
    again_rows = rows[rows["end_ms"] >= context].reset_index(drop=True)  # long ones included
    again_events = events[events["timestamp_ms"] >= context].reset_index(drop=True)
    far = 1 << 62
    later = second.add(again_rows, again_events, rows_until_ms=far, events_until_ms=far)
    after = [_outcomes(part, again_rows, again_events) for part in (later, second.finish())]
    for side in (0, 1):
        parts = [before[side], *(outcome[side] for outcome in after)]
        assert sum(len(part) for part in parts) == len(whole[side])  # each decided once
        assert {key: value for part in parts for key, value in part.items()} == whole[side]
