"""What the matcher takes and gives: its settings, its result and the statuses it assigns."""

from __future__ import annotations

import dataclasses
import enum

import pandas as pd


class RowStatus(enum.StrEnum):
    """What became of a billable row."""

    BILLED = "billed"
    """An event in Lago bills it."""
    MISSING = "missing"
    """In the window and no event bills it: to backfill."""
    NEIGHBOUR = "neighbour"
    """Outside the window: its own window's run decides."""


class EventStatus(enum.StrEnum):
    """What a Lago event turned out to be."""

    MATCHED = "matched"
    NEIGHBOUR = "neighbour"
    """It bills a row outside the window."""
    COPY = "copy"
    """A second copy of an event (ClickHouse store): billed once."""
    UNEXPLAINED = "unexplained"
    OUTSIDE = "outside"
    """Listed for the margins, timestamp outside the window, no row of ours: not our business."""


class Reason(enum.StrEnum):
    """Why an event inside the window bills no row."""

    DUPLICATE = "duplicate"
    """Another event already bills the request it looks like, or has its transaction id."""
    PROPERTY_MISMATCH = "property mismatch"
    """A request of that subscription is near, but model, tokens or cost differ (or, for an
    event of ours, its transaction id is a row's under another subscription)."""
    NO_SUCH_REQUEST = "no such request"
    """No spend-log row of that subscription near its time."""


ROW_STATUSES = [RowStatus.BILLED.value, RowStatus.MISSING.value, RowStatus.NEIGHBOUR.value]
EVENT_STATUSES = [
    EventStatus.MATCHED.value,
    EventStatus.NEIGHBOUR.value,
    EventStatus.COPY.value,
    EventStatus.UNEXPLAINED.value,
    EventStatus.OUTSIDE.value,
]
REASONS = ["", Reason.DUPLICATE.value, Reason.PROPERTY_MISMATCH.value, Reason.NO_SUCH_REQUEST.value]
MATCHED_BY = ["", "id", "fingerprint"]


@dataclasses.dataclass(frozen=True)
class MatchSettings:
    """The window on "startTime" (Unix ms, half-open) and how far event times may stray.

    An event may bill a row when its time lies in [endTime - skew, endTime + max_delay];
    costs are alike when they differ by at most `cost_tolerance` of the larger one.
    """

    since_ms: int
    until_ms: int
    skew_ms: int
    max_delay_ms: int
    cost_tolerance: float = 1e-9
    block_ms: int = 3_600_000
    """The forward pass decides time in blocks this long, on a grid from the Unix epoch."""

    @property
    def reach(self) -> int:
        """No row and event further apart in time than this (ms) can bill each other."""
        return max(self.skew_ms, self.max_delay_ms)


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """`rows` and `events` as given, plus status columns, and the pairs that were matched.

    rows gain `status` (ROW_STATUSES), `event` (position in events, -1) and `matched_by`
    ("id", "fingerprint" or ""); events gain `status` (EVENT_STATUSES), `row` (position in
    rows, -1) and `reason` (REASONS; "" unless unexplained).
    """

    rows: pd.DataFrame
    events: pd.DataFrame

    @property
    def missing(self) -> pd.DataFrame:
        """Rows to backfill."""
        return self.rows[self.rows["status"] == RowStatus.MISSING]

    @property
    def unexplained(self) -> pd.DataFrame:
        """Events in the window that bill no row."""
        return self.events[self.events["status"] == EventStatus.UNEXPLAINED]
