"""How far beyond a window spend logs are read and Lago is listed, so its edges are judged right.

Rows are windowed by "startTime"; an event is stamped from endTime - skew to endTime +
max_delay; a request may last up to `longest`. So, for a window [since, until):
- events are listed from since - skew to the last in-window row's endTime + max_delay (at
  least until + max_delay), but never past the settle point, where they may still arrive;
- rows are read that could own any listed event: "startTime" in [since - margin, until +
  margin) (margin = skew + max_delay), those that started up to `longest` earlier and ended
  after since - margin (long requests), and those that start before the listing's end + skew.
Rows outside the window only claim their own events; they are never backfilled from here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from reconcile.window import Window

DEFAULT_SKEW = dt.timedelta(minutes=2)
DEFAULT_MAX_DELAY = dt.timedelta(minutes=20)
DEFAULT_LONGEST = dt.timedelta(hours=6)
DEFAULT_SETTLE = dt.timedelta(minutes=15)


@dataclasses.dataclass(frozen=True)
class Margins:
    """How far event times stray from endTime, and the longest request considered."""

    skew: dt.timedelta = DEFAULT_SKEW
    max_delay: dt.timedelta = DEFAULT_MAX_DELAY
    longest: dt.timedelta = DEFAULT_LONGEST

    @property
    def margin(self) -> dt.timedelta:
        """How far beyond the window rows are read in any case."""
        return self.skew + self.max_delay

    def rows_around(self, window: Window) -> Window:
        """The rows read in any case: the window and its margins, on "startTime"."""
        return Window(window.since - self.margin, window.until + self.margin)

    def long_rows_before(self, window: Window) -> tuple[Window, dt.datetime] | None:
        """Rows that started earlier still, and the time they must have ended after (or None)."""
        start = window.since - max(self.longest, self.margin)
        if start >= window.since - self.margin:
            return None
        return Window(start, window.since - self.margin), window.since - self.margin

    def listing(
        self, window: Window, last_end: dt.datetime | None, settle_point: dt.datetime
    ) -> Window:
        """Lago's events to list, both edges included: every in-window row's event can be in it."""
        end = window.until + self.max_delay
        if last_end is not None:
            end = max(end, last_end + self.max_delay)
        start = window.since - self.skew
        return Window(start, max(min(end, settle_point), start + dt.timedelta(milliseconds=1)))

    def rows_after(self, window: Window, listing: Window) -> Window | None:
        """Rows starting after the margin that may still own a listed event (or None)."""
        start, end = window.until + self.margin, listing.until + self.skew
        return Window(start, end) if end > start else None

    def settled(self, end: dt.datetime, settle_point: dt.datetime) -> bool:
        """Whether every event of a request that ended at `end` has had time to arrive."""
        return end + self.max_delay <= settle_point
