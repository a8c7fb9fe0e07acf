"""The forward pass: a window read, listed and matched slice by slice, in bounded memory.

Slices are spans of time (`JobSettings.slice`, an hour by default, on a grid from the Unix
epoch). Step by step the pass reads the spend logs of the next slice of "startTime", lists
Lago's events of the next slice of timestamps, and hands both to the matcher's forward pass
(reconcile.matching.stream), which decides every block of time nothing unread can change.
Each step yields what it decided; only the slices in flight and their margins are held. The
ranges read and listed are those of reconcile.margins, so a window gets the answer it would
get read whole, and a pass started from the `Frontier` another one reached (resume) goes on
exactly as that one would have, reading and listing again only the margins before it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.attribute import Tally, tally
from reconcile.expected import EXPECTED_SCHEMA, Expected, expected_chunk
from reconcile.lago.client import LagoClient
from reconcile.lago.events import arrow_page, frame
from reconcile.matching import MatchResult
from reconcile.matching.stream import StreamMatch
from reconcile.pipeline import match_settings, rows_frame
from reconcile.postgres import Database
from reconcile.settings import JobSettings
from reconcile.spendlogs.read import open_snapshot, read_window
from reconcile.window import Window, duration_ms, from_ms, to_ms

log = logging.getLogger(__name__)

FAR = 1 << 62
"""Past any time: nothing more will come."""

EventKey = tuple[str | None, str | None, int]
"""An event's identity: transaction_id, subscription, timestamp_ms."""


@dataclasses.dataclass(frozen=True)
class Frontier:
    """Where a pass stands (Unix ms), enough for another to go on from there.

    Everything before `decided_ms` is decided, and so are the events after it in `taken`
    (they bill rows that ended before it). The window's rows that started before `tallied_ms`
    are counted; `last_end_ms` is the latest endTime among them (how far Lago is listed).
    """

    decided_ms: int
    tallied_ms: int
    last_end_ms: int | None = None
    taken: tuple[EventKey, ...] = ()


@dataclasses.dataclass(frozen=True)
class Step:
    """What one step decided, and how far the pass has come.

    `expected.events` holds the rows decided, position for position with `result.rows` (whose
    `event` is a position in `result.events`); `expected.tally` counts the window's own rows
    first read in this step, whatever their class.
    """

    expected: Expected
    result: MatchResult
    frontier: Frontier | None
    """None until the pass has decided anything."""
    slices_done: int
    slices_total: int
    rows_read: int
    events_listed: int

    @property
    def last(self) -> bool:
        """Whether this step decided everything left: the pass ends with it."""
        return self.slices_total < 0


def forward_pass(
    database: Database,
    client: LagoClient,
    settings: JobSettings,
    *,
    now: dt.datetime,
    start: Frontier | None = None,
    observe: Callable[[pa.Table], None] | None = None,
) -> Iterator[Step]:
    """The window's steps in time order, one per slice; the last decides everything left.

    `observe` sees every classified row of the window itself once (all classes, margins left
    out). Lago is listed over reconcile.margins' listing, never past `now - settings.settle`.
    """
    window, margins = settings.window, settings.margins
    since, until = to_ms(window.since), to_ms(window.until)
    margin, skew = duration_ms(margins.margin), duration_ms(margins.skew)
    settle_point = now - settings.settle  # never listed past
    matcher = match_settings(settings)
    state = _Pass(settings, StreamMatch(matcher), observe, start)
    rows_at, events_at = since - margin, since - skew
    if start is not None:  # the margins before the frontier: context, not decided again
        context = start.decided_ms - 2 * matcher.reach - matcher.block_ms
        rows_at, events_at = max(rows_at, context), max(events_at, context)
    at = _Cursors(rows_at, events_at, to_ms(margins.listing(window, None, settle_point).until))
    first, size = (since - margin) // matcher.block_ms, matcher.block_ms  # resumed or not
    with open_snapshot(database) as connection:
        read = _reader(connection, database, settings)
        longest = max(duration_ms(margins.longest), margin)
        long_since = max(since, rows_at) - longest
        if long_since < rows_at:  # long requests that started earlier and end in the range
            state.read(read(long_since, rows_at, rows_at), upto=None)
        # Lago is listed a step ahead, in a thread of its own: its answers come while this
        # thread reads Postgres and matches, and while the step before is being sent.
        lister = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lago-listing")
        pending: tuple[int, concurrent.futures.Future[pd.DataFrame]] | None = None
        handed = events_at  # every event stamped before it is with the matcher
        try:
            while at.more:
                edge = at.edge(size)
                if at.rows_left and at.rows_at < edge:  # (the other side may be behind)
                    high = edge if at.rows_end is None else min(edge, at.rows_end)
                    state.read(read(at.rows_at, high), upto=high)
                    at.rows_at = high
                    if at.rows_end is None and at.rows_at >= until + margin:
                        last = None if state.last_end is None else from_ms(state.last_end)
                        at.ends(to_ms(margins.listing(window, last, settle_point).until), skew)
                submitted = None
                if at.events_at <= at.cap and at.events_at < edge:
                    high = min(edge, at.cap + 1)
                    future = lister.submit(_listed, client, settings, at.events_at, high)
                    submitted, at.events_at = (high, future), high
                if pending is not None:
                    handed = pending[0]
                    state.take_listed(pending[1].result())
                pending = submitted
                total = (max(at.rows_end or until + margin, at.events_at) - 1) // size + 1
                yield state.step(
                    at.rows_at if at.rows_left else FAR,
                    handed,
                    (min(at.rows_at, handed) // size - first, total - first),
                )
            if pending is not None:
                state.take_listed(pending[1].result())
        finally:  # a listing under way ends (a signal ends its waits) before the client closes
            lister.shutdown(wait=True, cancel_futures=True)
    state.warn_long()
    yield state.step(FAR, FAR, None)


@dataclasses.dataclass
class _Cursors:
    """How far a pass has read spend logs ("startTime") and listed Lago (timestamps), Unix ms."""

    rows_at: int
    events_at: int
    floor: int
    """The least the listing reaches (its last instant), whatever the rows say."""
    rows_end: int | None = None
    """Where reading ends: known once the window's own rows are all read."""
    listing_end: int | None = None
    """The listing's last instant: known then too."""

    @property
    def rows_left(self) -> bool:
        return self.rows_end is None or self.rows_at < self.rows_end

    @property
    def cap(self) -> int:
        """How far Lago may be listed for now (its last instant)."""
        return self.floor if self.listing_end is None else self.listing_end

    @property
    def more(self) -> bool:
        listing_end = -FAR if self.listing_end is None else self.listing_end
        return self.rows_left or self.events_at <= listing_end

    def ends(self, listing_end: int, skew: int) -> None:
        """The window's own rows all read: the listing ends here, reading a skew after it."""
        self.listing_end = listing_end
        self.rows_end = max(self.rows_at, listing_end + skew)

    def edge(self, size: int) -> int:
        """Where the next step reads and lists up to: the next grid line ahead of either."""
        moving = [self.rows_at] if self.rows_left else []
        moving += [self.events_at] if self.events_at <= self.cap else []
        return (min(moving) // size + 1) * size


class _Pass:
    """What a pass holds between steps: the matcher, the rows it has not decided, the counts."""

    def __init__(
        self,
        settings: JobSettings,
        stream: StreamMatch,
        observe: Callable[[pa.Table], None] | None,
        start: Frontier | None,
    ) -> None:
        self.settings, self.stream, self.observe = settings, stream, observe
        self.tallied = start.tallied_ms if start is not None else -FAR
        self.last_end = start.last_end_ms if start is not None else None
        if start is not None:
            stream.resume(start.decided_ms, start.taken)
        self.held = EXPECTED_SCHEMA.empty_table()  # rows added, not yet decided, in order
        self.held_numbers = np.zeros(0, dtype=np.int64)
        self.numbered = 0
        self.fresh: list[pa.Table] = []
        self.listed: list[pd.DataFrame] = []
        self.tally = Tally()
        self.rows_read = self.events_listed = 0
        self.too_long = [0, 0]  # requests longer than --longest-request, the longest (ms)

    def read(self, chunks: Iterable[pa.Table], upto: int | None) -> None:
        """Take read spend-log rows: tally the window's own, keep their expected events.

        `upto`: every row that started before it has now been read (None: a partial read).
        """
        settings = self.settings
        for rows in chunks:
            events, own = expected_chunk(
                rows, window=settings.window, code=settings.code, customers=settings.customers
            )
            self.rows_read += rows.num_rows
            fresh = pc.greater_equal(own.column("start_ms"), self.tallied)
            own = own.filter(fresh)
            self.tally += tally(own)
            if self.observe is not None and own.num_rows:
                self.observe(own)
            inside = events.filter(events.column("in_window"))
            if inside.num_rows:
                latest = int(pc.max(inside.column("end_ms")).as_py())
                self.last_end = latest if self.last_end is None else max(self.last_end, latest)
            self._note_long(events)
            self.fresh.append(events)
        if upto is not None:
            self.tallied = max(self.tallied, upto)

    def take_listed(self, events: pd.DataFrame) -> None:
        """Take Lago's events of the next range of time."""
        self.events_listed += len(events)
        self.listed.append(events)

    def step(self, rows_until: int, events_until: int, slices: tuple[int, int] | None) -> Step:
        """Hand what was read and listed to the matcher; what it decided, as a Step."""
        fresh = pa.concat_tables(self.fresh) if self.fresh else EXPECTED_SCHEMA.empty_table()
        events = pd.concat(self.listed, ignore_index=True) if self.listed else frame([])
        self.fresh, self.listed = [], []
        numbers = np.arange(self.numbered, self.numbered + fresh.num_rows, dtype=np.int64)
        self.numbered += fresh.num_rows
        self.held = pa.concat_tables([self.held, fresh]) if self.held.num_rows else fresh
        self.held_numbers = np.concatenate([self.held_numbers, numbers])
        added = rows_frame(fresh)
        if slices is None:
            decided = _joined(
                self.stream.add(added, events, rows_until_ms=FAR, events_until_ms=FAR),
                self.stream.finish(),
            )
        else:
            decided = self.stream.add(
                added, events, rows_until_ms=rows_until, events_until_ms=events_until
            )
        rows = self._take(decided.rows.index.to_numpy())
        result = _local(decided)
        step_tally, self.tally = self.tally, Tally()
        done, total = slices if slices is not None else (-1, -1)
        return Step(
            expected=Expected(events=rows, tally=step_tally),
            result=result,
            frontier=self.frontier(),
            slices_done=done,
            slices_total=total,
            rows_read=self.rows_read,
            events_listed=self.events_listed,
        )

    def frontier(self) -> Frontier | None:
        """Where the pass stands, once it has decided anything."""
        found = self.stream.frontier()
        if found is None:
            return None
        decided, taken = found
        return Frontier(
            decided_ms=decided, tallied_ms=self.tallied, last_end_ms=self.last_end, taken=taken
        )

    def _take(self, numbers: np.ndarray) -> pa.Table:
        """The held rows with these numbers, in their order; they are held no more."""
        where = np.searchsorted(self.held_numbers, numbers)
        rows = self.held.take(pa.array(where, pa.int64()))
        keep = np.ones(len(self.held_numbers), dtype=bool)
        keep[where] = False
        self.held = self.held.filter(pa.array(keep))
        self.held_numbers = self.held_numbers[keep]
        return rows

    def _note_long(self, events: pa.Table) -> None:
        """Count the requests that lasted longer than --longest-request (warned at the end)."""
        if not events.num_rows:
            return
        lasted = pc.subtract(events.column("end_ms"), events.column("start_ms")).to_numpy()
        over = lasted > duration_ms(self.settings.margins.longest)
        if over.any():
            self.too_long[0] += int(over.sum())
            self.too_long[1] = max(self.too_long[1], int(lasted.max()))

    def warn_long(self) -> None:
        count, longest = self.too_long
        if count:
            log.warning(
                "%s request(s) lasted longer than --longest-request (%s; the longest: %.1f h): "
                "the window after theirs does not read them, and may bill an identical request "
                "with their event; raise --longest-request above the longest",
                f"{count:,}",
                self.settings.margins.longest,
                longest / 3_600_000,
            )


def _reader(
    connection: psycopg.Connection, database: Database, settings: JobSettings
) -> Callable[..., Iterator[pa.Table]]:
    """read(low, high, ended_since=None): the rows of "startTime" in [low, high), Unix ms."""

    def read(low: int, high: int, ended_since: int | None = None) -> Iterator[pa.Table]:
        yield from read_window(
            connection,
            database,
            settings.charge_by,
            Window(from_ms(low), from_ms(high)),
            chunk_rows=settings.chunk_rows,
            ended_since=None if ended_since is None else from_ms(ended_since),
        )
        connection.rollback()  # each slice its own snapshot: none held for hours

    return read


def _listed(client: LagoClient, settings: JobSettings, low: int, high: int) -> pd.DataFrame:
    """Lago's events stamped in [low, high) (of the customers asked for, if any)."""
    listing = Window(from_ms(low), from_ms(high))
    code, customers = settings.code, settings.customers
    if customers:
        parts = [
            frame(client.list_slices(code, listing, arrow_page, subscription=customer))
            for customer in sorted(customers)
        ]
        events = pd.concat(parts, ignore_index=True)
    else:
        events = frame(client.list_slices(code, listing, arrow_page))
    return events[events["timestamp_ms"] < high].reset_index(drop=True)  # high: the next's


def _joined(first: MatchResult, second: MatchResult) -> MatchResult:
    return MatchResult(
        rows=pd.concat([first.rows, second.rows]), events=pd.concat([first.events, second.events])
    )


def _local(decided: MatchResult) -> MatchResult:
    """The decided rows and events renumbered from 0, partners pointing at their positions."""
    rows, events = decided.rows, decided.events
    event_at = pd.Series(np.arange(len(events), dtype=np.int64), index=events.index)
    row_at = pd.Series(np.arange(len(rows), dtype=np.int64), index=rows.index)
    row_partner = rows["event"].to_numpy()
    event_partner = events["row"].to_numpy()
    local_event = np.full(len(rows), -1, dtype=np.int64)
    paired = row_partner >= 0
    local_event[paired] = event_at.loc[row_partner[paired]].to_numpy()
    local_row = np.full(len(events), -1, dtype=np.int64)
    paired = event_partner >= 0
    local_row[paired] = row_at.loc[event_partner[paired]].to_numpy()
    return MatchResult(
        rows=rows.reset_index(drop=True).assign(event=local_event),
        events=events.reset_index(drop=True).assign(row=local_row),
    )
