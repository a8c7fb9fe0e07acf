"""How long each listing slice is: grown while Lago's pages come back sparse, shrunk when dense."""

from __future__ import annotations

import dataclasses
import datetime as dt

#: A slice longer than the shortest that holds more than this many pages of events is split
#: before it is read: a sparse stretch that turns dense must not be paged deep (offset
#: pagination) nor held in memory whole.
DENSE_PAGES = 4
#: The longest slice: a month (a two-year window of sparse data in about 30 slices).
LONGEST = dt.timedelta(days=31)


class TooDense(Exception):
    """A slice holds `total` events, too many to read in one: split it and read it again."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


@dataclasses.dataclass
class SliceSizer:
    """The length of the next slice, from what the slices read so far held.

    Each slice aims at half a page of events (`per_page / 2`): a slice that held fewer makes
    the next one longer, at most twice as long and at most `longest`; one that held more makes
    it shorter at once, in proportion, down to `shortest`. With `longest == shortest` every
    slice has the same length.
    """

    shortest: dt.timedelta
    longest: dt.timedelta
    per_page: int
    start: dt.timedelta | None = None
    """The first slice's length (what an earlier listing learned); `shortest` if None."""
    span: dt.timedelta = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.longest = max(self.longest, self.shortest)
        self.span = min(max(self.start or self.shortest, self.shortest), self.longest)

    def heard(self, length: dt.timedelta, events: int) -> None:
        """A slice `length` long held `events` events: size the next ones by it."""
        wanted = self.span * 2 if events == 0 else length * (self.per_page / 2 / events)
        chosen = min(wanted, self.span * 2, self.longest)
        # Whole seconds: edges stay readable in logs and exact in Lago's filters.
        self.span = max(self.shortest, dt.timedelta(seconds=round(chosen.total_seconds())))

    def split_above(self, length: dt.timedelta) -> int | None:
        """How many events make a slice `length` long too dense to read whole (None: any)."""
        return DENSE_PAGES * self.per_page if length > self.shortest else None
