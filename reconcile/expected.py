"""What Lago should hold for a window: the events its billable rows call for, margins included."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.attribute import Tally, billable, classify, tally
from reconcile.build_events import EVENT_SCHEMA, build_events
from reconcile.margins import Margins
from reconcile.window import Window, duration_ms, from_ms, to_ms

log = logging.getLogger(__name__)

EXPECTED_SCHEMA = EVENT_SCHEMA.append(pa.field("in_window", pa.bool_()))


@dataclasses.dataclass(frozen=True)
class Expected:
    """The events (EXPECTED_SCHEMA), the tally of the window's own rows, what to list of Lago."""

    events: pa.Table
    tally: Tally
    listing: Window
    """Lago's events to list, both edges included (see reconcile.margins)."""

    @property
    def in_window(self) -> np.ndarray:
        """Which events are for rows whose "startTime" is in the window (not its margins)."""
        return self.events.column("in_window").to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


#: Reads [since, until) of spend logs (rows whose "endTime" is not before the datetime, if
#: given) in chunks, in "startTime" order: `reconcile.spendlogs.read.read_window`, bound.
ReadWindow = Callable[[Window, dt.datetime | None], Iterator[pa.Table]]


def expected_events(
    read: ReadWindow,
    *,
    window: Window,
    margins: Margins,
    settle_point: dt.datetime,
    code: str,
    customers: frozenset[str] = frozenset(),
    observe: Callable[[pa.Table], None] | None = None,
) -> Expected:
    """Read the window and every row that may own an event listed for it (reconcile.margins).

    Only the window's own rows are tallied and shown to `observe` (every class); the others are
    the neighbours' own: the matcher weighs them so their events are not taken for this
    window's, but they are never backfilled from here.
    """
    bounds = (to_ms(window.since), to_ms(window.until))
    wanted = pa.array(sorted(customers), pa.string())
    totals = Tally()
    chunks: list[pa.Table] = []
    last_end: int | None = None

    def take(rows: pa.Table) -> None:
        nonlocal totals, last_end
        classified = classify(rows)
        start = classified.column("start_ms").to_numpy()
        lasted = classified.column("end_ms").to_numpy() - start
        if len(lasted) and lasted.max() > longest_ms:
            too_long.append((int(lasted.max()), int((lasted > longest_ms).sum())))
        mine = (start >= bounds[0]) & (start < bounds[1])
        if customers:
            mine &= _among(classified.column("charge_by_id"), wanted)
        own = classified.filter(pa.array(mine))
        totals += tally(own)
        if observe is not None:
            observe(own)
        # Ids from every row: rows sharing a call id and millisecond decide each other's.
        events = build_events(billable(classified), code)
        if customers:
            events = events.filter(
                pa.array(_among(events.column("external_subscription_id"), wanted))
            )
        start = events.column("start_ms").to_numpy()
        inside = (start >= bounds[0]) & (start < bounds[1])
        if inside.any():
            latest = int(events.column("end_ms").to_numpy()[inside].max())
            last_end = latest if last_end is None else max(last_end, latest)
        chunks.append(events.append_column("in_window", pa.array(inside)))

    longest_ms = duration_ms(margins.longest)
    too_long: list[tuple[int, int]] = []
    long_before = margins.long_rows_before(window)
    if long_before is not None:
        for rows in read(*long_before):
            take(rows)
    for rows in read(margins.rows_around(window), None):
        take(rows)
    ended = None if last_end is None else from_ms(last_end)
    listing = margins.listing(window, ended, settle_point)
    after = margins.rows_after(window, listing)
    if after is not None:
        for rows in read(after, None):
            take(rows)
    if too_long:
        log.warning(
            "%s request(s) lasted longer than --longest-request (%s; the longest: %.1f h): the "
            "window after theirs does not read them, and may bill an identical request with "
            "their event; raise --longest-request above the longest",
            f"{sum(count for _, count in too_long):,}",
            margins.longest,
            max(lasted for lasted, _ in too_long) / 3_600_000,
        )
    events = pa.concat_tables(chunks) if chunks else EXPECTED_SCHEMA.empty_table()
    return Expected(events=events, tally=totals, listing=listing)


def _among(ids: pa.ChunkedArray, wanted: pa.Array) -> np.ndarray:
    found: np.ndarray = pc.fill_null(pc.is_in(ids, value_set=wanted), False).to_numpy(
        zero_copy_only=False
    )
    return found
