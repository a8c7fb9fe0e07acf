"""Listing slices sized by what Lago returns: fewer requests, exactly the same events."""

import datetime as dt
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.lago.client import LagoClient
from reconcile.lago.events import arrow_page, frame
from reconcile.lago.slicing import SliceSizer
from reconcile.lago_emulator import LagoEmulator
from reconcile.window import UTC, Window

KEY = "slicing-key"
START = dt.datetime(2024, 11, 1, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


def event(index: int, when: dt.datetime, subscription: str = "cust_1") -> dict[str, Any]:
    return {
        "transaction_id": f"rc1-{index:032x}",
        "external_subscription_id": subscription,
        "code": "tokens",
        "timestamp": f"{when.timestamp():.3f}",
        "properties": {"model": "gpt-4o-mini", "response_cost": "0.000015", "total_tokens": 9},
    }


@pytest.fixture
def lago() -> Iterator[LagoEmulator]:
    with LagoEmulator(api_key=KEY) as emulator:
        yield emulator


def listed(lago: LagoEmulator, window: Window, **options: Any) -> tuple[pd.DataFrame, int]:
    """The window's events as the matcher reads them, and how many requests that took."""
    before = lago.request_count
    with LagoClient(lago.url, KEY, **options) as client:
        found = frame(client.list_slices("tokens", window, arrow_page))
    # Categories in order of appearance depend on slicing; their values do not.
    found = found.astype({"subscription": str, "model": str})
    ordered = found.sort_values(["timestamp_ms", "transaction_id"], ignore_index=True)
    return ordered, lago.request_count - before


def test_a_sparse_two_year_window_takes_a_few_dozen_requests(lago: LagoEmulator) -> None:
    window = Window(START, START + dt.timedelta(days=730))
    # One event every five days and a half, some exactly on a whole hour (a possible edge).
    lago.preload(event(day, START + dt.timedelta(days=day * 5.5)) for day in range(133))
    started = time.monotonic()
    found, requests = listed(lago, window)
    assert len(found) == found["transaction_id"].nunique() == 133
    # Hourly slices made 17,520 requests here; a month-long slice at most is 24 slices.
    assert requests < 60, requests
    assert time.monotonic() - started < 10


def test_a_month_of_sparse_data_against_fixed_hourly_slices(lago: LagoEmulator) -> None:
    window = Window(START, START + dt.timedelta(days=30))
    lago.preload(event(index, START + index * dt.timedelta(hours=7)) for index in range(100))
    adaptive, adaptive_requests = listed(lago, window)
    hourly, hourly_requests = listed(lago, window, longest_slice_hours=1)
    pd.testing.assert_frame_equal(adaptive, hourly)
    assert hourly_requests == 720
    assert adaptive_requests < 30


def test_listing_day_after_day_starts_each_day_where_the_last_one_ended(
    lago: LagoEmulator,
) -> None:
    """A report lists a window a day at a time: a sparse year is about a request a day."""
    days = 120
    lago.preload(event(index, START + index * dt.timedelta(days=3)) for index in range(days // 3))
    before, found = lago.request_count, 0
    with LagoClient(lago.url, KEY) as client:
        for day in range(days):
            since = START + dt.timedelta(days=day)
            window = Window(since, since + dt.timedelta(days=1))
            found += len(frame(client.list_slices("tokens", window, arrow_page)))
    assert found == days // 3 + sum(  # an event on a midnight is in both days' listings
        1 for index in range(1, days // 3) if index * 3 < days
    )
    # From an hour every day, each day climbed again: 1, 2, 4, 8, 16 hours, 5 requests.
    assert lago.request_count - before < days + 10


def test_a_sparse_stretch_that_turns_dense_is_split_before_it_is_read(
    lago: LagoEmulator,
) -> None:
    window = Window(START, START + dt.timedelta(days=60))
    burst = START + dt.timedelta(days=40)
    events = [event(index, START + index * dt.timedelta(days=1)) for index in range(40)]
    events += [
        event(1000 + index, burst + index * dt.timedelta(seconds=3)) for index in range(3000)
    ]
    lago.preload(events)
    found, _ = listed(lago, window, per_page=100)
    assert found["transaction_id"].nunique() == len(found) == 3040
    pages = [parse_qs(request.query).get("page", ["1"])[0] for request in lago.requests]
    deepest = max(int(page) for page in pages)
    # A one-hour slice of the burst holds 1,200 events: 12 pages, never the 30 of its day.
    assert deepest <= 13


def test_the_sizer_grows_while_sparse_and_shrinks_at_once_when_dense() -> None:
    sizer = SliceSizer(HOUR, dt.timedelta(days=31), per_page=2000)
    for _ in range(20):
        sizer.heard(sizer.span, 0)
    assert sizer.span == dt.timedelta(days=31)
    sizer.heard(dt.timedelta(days=31), 31 * 24 * 10_000)  # 10,000 an hour
    assert sizer.span == HOUR
    sizer.heard(HOUR, 500)  # a quarter page an hour: twice as long, not four times
    assert sizer.span == 2 * HOUR
    assert sizer.split_above(HOUR) is None
    assert sizer.split_above(2 * HOUR) == 8000
    fixed = SliceSizer(HOUR, HOUR, per_page=2000)
    fixed.heard(HOUR, 0)
    assert fixed.span == HOUR


#: Events as offsets in minutes from START over three days: clusters and lone events.
offsets = st.lists(
    st.one_of(
        st.integers(0, 3 * 24 * 60),
        st.builds(lambda hour, minute: hour * 60 + minute % 3, st.integers(0, 72), st.integers()),
    ),
    max_size=400,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minutes=offsets, per_page=st.sampled_from([5, 20, 100]))
def test_adaptive_slices_list_exactly_what_hourly_slices_list(
    minutes: list[int], per_page: int
) -> None:
    window = Window(START, START + dt.timedelta(days=3))
    with LagoEmulator(api_key=KEY) as lago:
        # Several events on one instant, and on whole hours (edges of both slicings).
        lago.preload(
            event(index, START + dt.timedelta(minutes=minute), f"cust_{index % 2}")
            for index, minute in enumerate(minutes)
        )
        adaptive, _ = listed(lago, window, per_page=per_page)
        hourly, _ = listed(lago, window, per_page=per_page, longest_slice_hours=1)
    pd.testing.assert_frame_equal(adaptive, hourly)
    # Both edges of the window are in; an event past its end (72 h and a minute) is not.
    inside = [index for index, minute in enumerate(minutes) if minute <= 3 * 24 * 60]
    assert sorted(adaptive["transaction_id"]) == sorted(f"rc1-{i:032x}" for i in inside)


SHOW_A_LISTING = """
import datetime as dt, sys, time
from reconcile.lago import progress
from reconcile.window import Window
progress.SHOW_AFTER = 0
start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
with progress.listing_progress("tokens", Window(start, start + dt.timedelta(days=4)), None) as tell:
    for _ in range(4):
        time.sleep(0.15)
        tell(dt.timedelta(days=1), 250)
print("listed", file=sys.stderr)
"""


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_shows_on_a_terminal_only(terminal: bool) -> None:
    if terminal:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        process = subprocess.Popen([sys.executable, "-c", SHOW_A_LISTING], stderr=follower)
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
        process.wait(timeout=30)
        os.close(leader)
    else:
        done = subprocess.run(
            [sys.executable, "-c", SHOW_A_LISTING], capture_output=True, check=True
        )
        shown = done.stderr
    assert b"listed" in shown
    assert (b"listing Lago tokens:  75%" in shown) is terminal
    assert (b"3.0/4.0 days" in shown and b"750 events read" in shown) is terminal


def _read(leader: int) -> bytes:
    try:
        return os.read(leader, 65536)
    except OSError:  # the child closed the terminal
        return b""
