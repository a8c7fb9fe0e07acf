"""Matching as one forward pass in time: hour blocks decided in turn, fed slice by slice.

A block is an hour of time (MatchSettings.block_ms, on a grid from the Unix epoch). When every
row and event that could bear on it has been added, the block is decided: the rows and events
not yet decided, up to a lookahead of two reaches past its end, are matched (reconcile.
matching.pairs), and what ends inside the block is final: each row ending before the block's
end, its event, and every event no later row can claim. The rest is matched again with the
next block. What is decided depends only on the data, never on how it was cut into slices,
so a window fed in slices gets exactly the answer it gets whole; only the blocks' rows, their
lookahead and two reaches of context are held at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.held import Codes, Held, sides
from reconcile.matching.pairs import copies, pair
from reconcile.matching.reasons import reasons
from reconcile.matching.sides import EVENT_COLUMNS, ROW_COLUMNS, flags, require
from reconcile.matching.types import (
    EVENT_STATUSES,
    MATCHED_BY,
    REASONS,
    ROW_STATUSES,
    EventStatus,
    MatchResult,
    MatchSettings,
    RowStatus,
)

EventKey = tuple[str | None, str | None, int]
"""An event's identity: transaction_id, subscription, timestamp_ms."""

_BILLED, _MISSING, _NEIGHBOUR = (ROW_STATUSES.index(status) for status in RowStatus)
_MATCHED, _NEIGHBOUR_EVENT, _COPY, _UNEXPLAINED, _OUTSIDE = (
    EVENT_STATUSES.index(status) for status in EventStatus
)


class StreamMatch:
    """Rows and events added in time order, decided block by block as soon as they can be.

    Rows and events are numbered in the order added (from 0, each side on its own): the
    results' index and partner columns (`event`, `row`) use these numbers.
    """

    def __init__(self, settings: MatchSettings) -> None:
        self.settings = settings
        self._codes = Codes()
        self._rows = _Side(ROW_COLUMNS)
        self._events = _Side(EVENT_COLUMNS)
        self._last_end: int | None = None
        self._resumed: tuple[int, frozenset[EventKey]] | None = None

    @property
    def held(self) -> tuple[int, int]:
        """How many rows and events are held (undecided, or kept as context)."""
        rows, events = self._rows, self._events
        return len(rows.held) - rows.idle, len(events.held) - events.idle

    def add(
        self,
        rows: pd.DataFrame,
        events: pd.DataFrame,
        *,
        rows_until_ms: int,
        events_until_ms: int,
    ) -> MatchResult:
        """Add rows and events; return what is now decided (possibly of earlier additions).

        Columns as `reconcile.matching.match` takes them. After this call every row ending
        before `rows_until_ms` and every event stamped before `events_until_ms` must have been
        added (rows read by "startTime" up to a point hold every row ending before it), and
        each addition's events are all those of a time range (copies share a timestamp).
        Raises ValueError on a malformed input.
        """
        require(rows, ROW_COLUMNS, "rows")
        require(events, EVENT_COLUMNS, "events")
        fresh_rows = Held.read(
            rows, rows=True, first=self._rows.added, codes=self._codes, time="end_ms"
        )
        fresh_events = Held.read(
            events, rows=False, first=self._events.added, codes=self._codes, time="timestamp_ms"
        )
        fresh_events.copy[:] = copies(events)
        if self._resumed is not None:
            self._as_decided(fresh_rows, fresh_events, *self._resumed)
        self._rows.add(rows, fresh_rows)
        self._events.add(events, fresh_events)
        self._advance(rows_until_ms, events_until_ms)
        return self._result()

    def resume(self, decided_ms: int, taken: Iterable[EventKey]) -> None:
        """Go on from where another pass's `frontier()` stood: what it decided stays decided.

        Rows and events added from now on that it had decided are context, never decided (or
        returned) again; add them as they were, from two reaches and a block before it.
        """
        self._last_end = decided_ms
        self._resumed = (decided_ms, frozenset(taken))

    def frontier(self) -> tuple[int, tuple[EventKey, ...]] | None:
        """Where the pass stands: all before the time is decided, and these events after it.

        None before anything is decided.
        """
        if self._last_end is None:
            return None
        events = self._events.held
        after = np.flatnonzero(
            events.done & ~events.copy & (events.time + self.settings.skew_ms >= self._last_end)
        )
        return self._last_end, events.keys(after, self._codes.subscription_texts)

    def _as_decided(
        self, rows: Held, events: Held, decided_ms: int, taken: frozenset[EventKey]
    ) -> None:
        """Mark what a pass that stood at `decided_ms` had decided (resume)."""
        rows.done[:] = rows.time < decided_ms
        done = events.time + self.settings.skew_ms < decided_ms
        later = np.flatnonzero(~done & ~events.copy)
        if len(later) and taken:
            keys = events.keys(later, self._codes.subscription_texts)
            done[later[[key in taken for key in keys]]] = True
        events.done[:] = done

    def finish(self) -> MatchResult:
        """Decide everything still held: nothing more will be added."""
        far = np.iinfo(np.int64).max // 4
        self._advance(far, far)
        return self._result()

    def _advance(self, rows_until: int, events_until: int) -> None:
        """Decide every block whose view is complete (the decided wait in `_result`)."""
        settings, block = self.settings, self.settings.block_ms
        lookahead = 2 * settings.reach
        while True:
            rows, events = self._rows.held, self._events.held
            waiting = np.concatenate([rows.time[~rows.done], events.time[~events.done]])
            if not len(waiting):
                break
            end = (int(waiting.min()) // block + 1) * block
            if self._last_end is not None:
                end = max(end, self._last_end + block)
            if (
                rows_until < end + lookahead
                or events_until < end + lookahead + settings.max_delay_ms
            ):
                break
            self._decide(end, lookahead)
            self._last_end = end

    def _decide(self, end: int, lookahead: int) -> None:
        """Decide the block ending at `end`: the rows and events decided wait in the sides."""
        settings = self.settings
        held_rows, held_events = self._rows.held, self._events.held
        row_view = np.flatnonzero(~held_rows.done & (held_rows.time < end + lookahead))
        open_events = ~held_events.done
        copy = held_events.copy
        event_view = np.flatnonzero(
            open_events & ~copy & (held_events.time < end + lookahead + settings.max_delay_ms)
        )
        copies_now = np.flatnonzero(
            open_events & copy & (held_events.time + settings.skew_ms < end)
        )
        row_side, event_side = sides(
            held_rows, row_view, held_events, event_view, settings.cost_tolerance
        )
        in_window = held_rows.in_window[row_view]
        row_event, event_row, matched_by = pair(row_side, event_side, settings)
        final_row = row_side.time < end
        paired = event_row >= 0
        final_event = np.where(
            paired, _at(final_row, event_row, False), event_side.time + settings.skew_ms < end
        )
        row_status = np.where(
            row_event >= 0, _BILLED, np.where(in_window, _MISSING, _NEIGHBOUR)
        ).astype(np.int8)
        inside = (event_side.time >= settings.since_ms) & (event_side.time < settings.until_ms)
        event_status = np.where(
            paired,
            np.where(_at(in_window, event_row, False), _MATCHED, _NEIGHBOUR_EVENT),
            np.where(inside, _UNEXPLAINED, _OUTSIDE),
        ).astype(np.int8)
        decided_rows, decided_events = row_view[final_row], event_view[final_event]
        partner = _at(held_events.number[event_view], row_event, -1)
        held_rows.status[decided_rows] = row_status[final_row]
        held_rows.partner[decided_rows] = partner[final_row]
        held_rows.matched_by[decided_rows] = matched_by[final_row]
        held_rows.done[decided_rows] = True
        partner = _at(held_rows.number[row_view], event_row, -1)
        held_events.status[decided_events] = event_status[final_event]
        held_events.partner[decided_events] = partner[final_event]
        held_events.done[decided_events] = True
        held_events.status[copies_now] = _COPY
        held_events.done[copies_now] = True
        decided_events = np.sort(np.concatenate([decided_events, copies_now]))
        unexplained = event_view[final_event][event_status[final_event] == _UNEXPLAINED]
        if len(unexplained):
            held_events.reason[unexplained] = self._reasons(end, lookahead, unexplained)
        self._rows.decided(decided_rows)
        self._events.decided(decided_events)
        context = end - 2 * settings.reach  # decided ones earlier than this are done with
        self._rows.keep(~(held_rows.done & (held_rows.time < context)))
        self._events.keep(~(held_events.done & (held_events.time < context)))

    def _reasons(self, end: int, lookahead: int, unexplained: np.ndarray) -> np.ndarray:
        """REASONS codes of these events (positions), judged by everything near, decided or not."""
        settings = self.settings
        low = end - settings.block_ms - 2 * settings.reach
        rows, events = self._rows.held, self._events.held
        names = events.transaction_id.take(pa.array(unexplained, pa.int64()))
        owners = np.unique(events.subscription_text[unexplained])
        # Only what can bear on them: rows of their subscriptions or ids, events of their ids.
        near_rows = np.flatnonzero(
            (rows.time >= low)
            & (rows.time < end + lookahead)
            & (
                np.isin(rows.subscription_text, owners)
                | flags(pc.is_in(rows.transaction_id, names))
            )
        )
        near_events = np.flatnonzero(
            (events.time >= low)
            & (events.time < end + lookahead + settings.max_delay_ms)
            & flags(pc.is_in(events.transaction_id, names))
        )
        row_side, event_side = sides(rows, near_rows, events, near_events, settings.cost_tolerance)
        where = np.searchsorted(near_events, unexplained)
        return reasons(row_side, event_side, where, settings).astype(np.int8)

    def _result(self) -> MatchResult:
        """The rows and events decided since the last result, indexed by their numbers."""
        rows, (_, status, partner, matched_by, _) = self._rows.taken()
        events, (_, event_status, event_partner, _, reason) = self._events.taken()
        return MatchResult(
            rows=rows.assign(
                status=categories(status, ROW_STATUSES),
                event=partner,
                matched_by=categories(matched_by, MATCHED_BY),
            ),
            events=events.assign(
                status=categories(event_status, EVENT_STATUSES),
                row=event_partner,
                reason=categories(reason, REASONS),
            ),
        )


class _Side:
    """One side of the pass: what it holds, the frames given, what was decided since.

    A frame is kept until all its lines are decided: results are taken from it.
    """

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.held = Held.empty()
        self.idle = 0
        """How many of those held are done with (let go of at the next copy)."""
        self.added = 0
        self.template = pd.DataFrame(columns=list(columns))
        self.frames: list[tuple[int, pd.DataFrame, list[int]]] = []
        """(first number, frame, [lines not yet decided])."""
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, frame: pd.DataFrame, fresh: Held) -> None:
        self.template = frame.iloc[:0]
        if len(fresh):
            waiting = int((~fresh.done).sum())
            if waiting:
                self.frames.append((self.added, frame, [waiting]))
            self.held = self.held.joined(fresh)
        self.added += len(fresh)

    def decided(self, at: np.ndarray) -> None:
        """The lines at these positions are decided: their outcome as it stands now."""
        held = self.held
        self.pending.append(
            (
                held.number[at],
                held.status[at],
                held.partner[at],
                held.matched_by[at],
                held.reason[at],
            )
        )

    def keep(self, keep: np.ndarray) -> None:
        """Let go of what `keep` leaves out, at once where it leads (a view, no copy).

        The rest goes once it is worth a copy; until then it is done with: nothing reads it.
        """
        drop = ~keep
        lead = int(np.argmin(drop)) if keep.any() else len(keep)
        self.idle = int(drop[lead:].sum())
        if self.idle * 8 > len(keep):
            self.held, self.idle = self.held.kept(keep), 0
        elif lead:
            self.held = self.held.sliced(lead)

    def taken(self) -> tuple[pd.DataFrame, list[np.ndarray]]:
        """The lines decided since the last call, in the order decided, and their outcome.

        The outcome: numbers, status, partner, matched_by and reason codes.
        """
        parts, self.pending = self.pending, []
        outcome = [
            np.concatenate([part[field] for part in parts]) if parts else np.zeros(0, kind)
            for field, kind in enumerate((np.int64, np.int8, np.int64, np.int8, np.int8))
        ]
        numbers = outcome[0]
        pieces, order = [], []
        for first, frame, waiting in self.frames:
            mine = np.flatnonzero((numbers >= first) & (numbers < first + len(frame)))
            if len(mine):
                pieces.append(frame.take(numbers[mine] - first))
                order.append(mine)
                waiting[0] -= len(mine)
        self.frames = [entry for entry in self.frames if entry[2][0] > 0]
        found = (pd.concat(pieces) if len(pieces) > 1 else pieces[0]) if pieces else self.template
        if len(pieces) > 1:
            positions = np.concatenate(order)
            if (np.diff(positions) < 0).any():
                found = found.take(np.argsort(positions, kind="stable"))
        found = found.set_axis(pd.Index(numbers, dtype=np.int64))
        ours = [name for name in found.columns if str(name).startswith("_")]
        return (found.drop(columns=ours) if ours else found), outcome


def _at(values: np.ndarray, positions: np.ndarray, absent: object) -> np.ndarray:
    """values[positions], `absent` where a position is -1."""
    found = np.full(len(positions), absent, dtype=values.dtype)
    hit = positions >= 0
    found[hit] = values[positions[hit]]
    return found


def categories(codes: np.ndarray, names: list[str]) -> pd.Categorical[str]:
    """Codes as a categorical column: a million statuses without a million strings."""
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=pd.Index(names))
