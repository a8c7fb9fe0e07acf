"""Exactly once across runs: windows side by side in any order, and nightly runs as time passes.

A model of the job around the real matcher: rows are read and Lago is listed as
`reconcile.margins` says, rows whose events may still arrive are held back, missing rows are
backfilled with their own ids. Requests last from nothing to hours (far beyond max_delay),
callbacks come late or never. After every run has happened, Lago must hold, per fingerprint,
exactly as many events as there were requests.
"""

import datetime as dt
from typing import Any

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from test_match import events_frame

from reconcile.margins import Margins
from reconcile.matching import MatchSettings, match
from reconcile.window import UTC, Window

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
MARGINS = Margins(
    skew=dt.timedelta(minutes=2), max_delay=dt.timedelta(minutes=20), longest=dt.timedelta(hours=6)
)
SETTLE = 15 * MINUTE
EPOCH = dt.datetime(2026, 11, 1, tzinfo=UTC)
KEY = ["subscription", "prompt_tokens", "completion_tokens", "cost"]
FINGERPRINTS = [(100, 20, 0.000027), (5, 0, 0.0000001), (1000, 400, 0.0042)]


def at(milliseconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=milliseconds)


def ms(instant: dt.datetime) -> int:
    return round((instant - EPOCH).total_seconds() * 1000)


class World:
    """LiteLLM's table and Lago over time: rows appear when requests end, events when stamped."""

    def __init__(self, requests: list[tuple[Any, ...]]) -> None:
        self.rows = pd.DataFrame(
            [
                {"transaction_id": f"rc1-{index}", "request_id": f"req-{index:04d}", "start_ms": start,
                 "end_ms": start + duration, "prompt_tokens": p, "completion_tokens": c,
                 "total_tokens": p + c, "cost": cost, "subscription": sub, "model": "m"}
                for index, (start, duration, (p, c, cost), _, _, sub) in enumerate(requests)
            ],
            columns=["transaction_id", "request_id", "start_ms", "end_ms", "prompt_tokens",
                     "completion_tokens", "total_tokens", "cost", "subscription", "model"],
        )  # fmt: skip
        self.lago: list[dict[str, Any]] = [
            {"transaction_id": f"uuid-{index}", "timestamp_ms": start + duration + delay,
             "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "cost": cost,
             "subscription": sub, "model": "m"}
            for index, (start, duration, (p, c, cost), sent, delay, sub) in enumerate(requests)
            if sent
        ]  # fmt: skip

    def reconcile(self, since: int, until: int, now: int) -> int | None:
        """One run over [since, until) at `now`; the start of its first held-back row, if any."""
        window, settle_point = Window(at(since), at(until)), at(now - SETTLE)
        start, end = self.rows["start_ms"], self.rows["end_ms"]
        written = end <= now  # LiteLLM writes a row when its request ends
        around = MARGINS.rows_around(window)
        read = written & (start >= ms(around.since)) & (start < ms(around.until))
        long_before = MARGINS.long_rows_before(window)
        if long_before is not None:
            span, ended_since = long_before
            read |= written & (start >= ms(span.since)) & (start < ms(span.until))
            read &= ~((start < ms(span.until)) & (end < ms(ended_since)))
        inside = (start >= since) & (start < until)
        last = end[read & inside].max() if (read & inside).any() else None
        listing = MARGINS.listing(window, None if last is None else at(int(last)), settle_point)
        after = MARGINS.rows_after(window, listing)
        if after is not None:
            read |= written & (start >= ms(after.since)) & (start < ms(after.until))
        rows = self.rows[read].assign(in_window=inside[read]).reset_index(drop=True)
        listed = [
            event
            for event in self.lago
            if event["timestamp_ms"] <= now
            and ms(listing.since) <= event["timestamp_ms"] <= ms(listing.until)
        ]
        events = events_frame(*listed) if listed else events_frame().iloc[0:0]
        settings = MatchSettings(since, until, 2 * MINUTE, 20 * MINUTE)
        result = match(rows.drop(columns="start_ms"), events.reset_index(drop=True), settings)
        held = None
        for _, row in result.missing.iterrows():
            if row["end_ms"] + 20 * MINUTE > now - SETTLE:
                started = int(self.rows.loc[self.rows["transaction_id"] == row["transaction_id"],
                                            "start_ms"].iloc[0])  # fmt: skip
                held = started if held is None else min(held, started)
                continue
            self.lago.append(
                {"transaction_id": row["transaction_id"], "timestamp_ms": row["end_ms"],
                 **{key: row[key] for key in ("prompt_tokens", "completion_tokens",
                                              "total_tokens", "cost", "subscription", "model")}}
            )  # fmt: skip
        return held

    def billed_exactly_once(self) -> None:
        """Per fingerprint, as many events in Lago as requests; no id twice."""
        held = pd.DataFrame(self.lago, columns=[*KEY, "transaction_id"])
        billed = held.groupby(KEY).size().to_dict() if len(held) else {}
        wanted = self.rows.groupby(KEY).size().to_dict() if len(self.rows) else {}
        assert billed == wanted
        assert held["transaction_id"].is_unique


# Busy enough that identical requests crowd the windows' edges.
durations = st.one_of(st.integers(0, 5 * MINUTE), st.integers(0, 3 * HOUR))
requests = st.lists(
    st.tuples(st.integers(0, 2 * HOUR - 1), durations, st.sampled_from(FINGERPRINTS[:2]),
              st.booleans(), st.integers(0, 15 * MINUTE), st.sampled_from(["cust_a", "cust_b"])),
    max_size=30,
)  # fmt: skip


@given(requests=requests, reverse=st.booleans())
def test_windows_side_by_side_bill_every_request_once_in_any_order(
    requests: list[tuple[Any, ...]], reverse: bool
) -> None:
    world = World(requests)
    windows = [(0, HOUR), (HOUR, 2 * HOUR)]
    for since, until in reversed(windows) if reverse else windows:
        assert world.reconcile(since, until, now=10 * 24 * HOUR) is None  # all settled
    # Requests starting outside both windows are no one's here: bill them by hand.
    assert (world.rows["start_ms"] < 2 * HOUR).all()
    world.billed_exactly_once()


@given(requests=requests, step=st.sampled_from([40 * MINUTE, 90 * MINUTE, 3 * HOUR]))
def test_nightly_runs_bill_every_request_once_as_time_passes(
    requests: list[tuple[Any, ...]], step: int
) -> None:
    """Runs every `step`, each from its last full coverage minus the lookback to now - settle."""
    world = World(requests)
    lookback, covered = 24 * HOUR, None
    for now in [*range(step, 8 * HOUR, step), 10 * 24 * HOUR]:
        since = 0 if covered is None else max(covered - lookback, 0)
        until = now - SETTLE
        if since >= until:
            continue
        held = world.reconcile(since, until, now)
        covered = until if held is None else held
    world.billed_exactly_once()


def test_a_long_request_before_the_window_keeps_its_event() -> None:
    """A 50-minute request that started before the second window's margins owns the event
    stamped in it; the identical short request that ended 2 s later, without one, is missing.
    Read only its margins, the second window would bill that one with the other's event."""
    fingerprint = FINGERPRINTS[0]
    long = (HOUR - 40 * MINUTE, 50 * MINUTE, fingerprint, True, SECOND, "cust_a")
    short = (HOUR + 5 * MINUTE, 5 * MINUTE + 3 * SECOND, fingerprint, False, 0, "cust_a")
    for order in ([(0, HOUR), (HOUR, 2 * HOUR)], [(HOUR, 2 * HOUR), (0, HOUR)]):
        world = World([long, short])
        for since, until in order:
            world.reconcile(since, until, now=10 * 24 * HOUR)
        world.billed_exactly_once()
