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

from reconcile.matching.pairs import copies, pair
from reconcile.matching.reasons import reasons
from reconcile.matching.sides import (
    EVENT_COLUMNS,
    ROW_COLUMNS,
    numbers,
    read_sides,
    require,
)
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
        self._rows = _numbered(pd.DataFrame(columns=list(ROW_COLUMNS)), "end_ms", 0)
        self._events = _numbered(pd.DataFrame(columns=list(EVENT_COLUMNS)), "timestamp_ms", 0)
        self._added = [0, 0]
        self._last_end: int | None = None
        self._resumed: tuple[int, frozenset[EventKey]] | None = None

    @property
    def held(self) -> tuple[int, int]:
        """How many rows and events are held (undecided, or kept as context)."""
        return len(self._rows), len(self._events)

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
        fresh_rows = _numbered(rows, "end_ms", self._added[0])
        fresh_events = _numbered(events, "timestamp_ms", self._added[1])
        fresh_events["_copy"] = copies(events)
        self._added = [self._added[0] + len(rows), self._added[1] + len(events)]
        if self._resumed is not None:
            self._as_decided(fresh_rows, fresh_events, *self._resumed)
        self._rows = _joined([self._rows, fresh_rows])
        self._events = _joined([self._events, fresh_events])
        decided = self._advance(rows_until_ms, events_until_ms)
        return _result([(fresh_rows.iloc[:0], fresh_events.iloc[:0]), *decided])

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
        events = self._events
        after = events[
            events["_done"].to_numpy()
            & ~events["_copy"].to_numpy()
            & (events["_time"].to_numpy() + self.settings.skew_ms >= self._last_end)
        ]
        return self._last_end, _keys(after)

    def _as_decided(
        self, rows: pd.DataFrame, events: pd.DataFrame, decided_ms: int, taken: frozenset[EventKey]
    ) -> None:
        """Mark what a pass that stood at `decided_ms` had decided (resume)."""
        rows["_done"] = rows["_time"].to_numpy() < decided_ms
        time = events["_time"].to_numpy()
        done = time + self.settings.skew_ms < decided_ms
        later = np.flatnonzero(~done & ~events["_copy"].to_numpy())
        if len(later) and taken:
            keys = _keys(events.iloc[later])
            done[later[[key in taken for key in keys]]] = True
        events["_done"] = done

    def finish(self) -> MatchResult:
        """Decide everything still held: nothing more will be added."""
        far = np.iinfo(np.int64).max // 4
        return _result([(self._rows.iloc[:0], self._events.iloc[:0]), *self._advance(far, far)])

    def _advance(
        self, rows_until: int, events_until: int
    ) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
        """Decide every block whose view is complete: the rows and events decided, per block."""
        settings, block = self.settings, self.settings.block_ms
        lookahead = 2 * settings.reach
        decided = []
        while True:
            waiting = np.concatenate(
                [
                    self._rows["_time"].to_numpy()[~self._rows["_done"].to_numpy()],
                    self._events["_time"].to_numpy()[~self._events["_done"].to_numpy()],
                ]
            ) if len(self._rows) or len(self._events) else np.zeros(0, np.int64)  # fmt: skip
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
            decided.append(self._decide(end, lookahead))
            self._last_end = end
        return decided

    def _decide(self, end: int, lookahead: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Decide the block ending at `end`: the rows and events decided."""
        settings = self.settings
        held_rows, held_events = self._rows, self._events
        row_view = np.flatnonzero(
            ~held_rows["_done"].to_numpy() & (held_rows["_time"].to_numpy() < end + lookahead)
        )
        open_events = ~held_events["_done"].to_numpy()
        copy = held_events["_copy"].to_numpy()
        event_view = np.flatnonzero(
            open_events
            & ~copy
            & (held_events["_time"].to_numpy() < end + lookahead + settings.max_delay_ms)
        )
        copies_now = held_events.index.to_numpy()[
            open_events & copy & (held_events["_time"].to_numpy() + settings.skew_ms < end)
        ]
        rows = held_rows.iloc[row_view].reset_index(drop=True)
        events = held_events.iloc[event_view].reset_index(drop=True)
        row_side, event_side, in_window = read_sides(rows, events, settings)
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
        row_numbers = held_rows.index.to_numpy()[row_view]
        event_numbers = held_events.index.to_numpy()[event_view]
        decided_rows, decided_events = row_numbers[final_row], event_numbers[final_event]
        partner = _at(event_numbers, row_event, -1)
        held_rows.loc[decided_rows, "_status"] = row_status[final_row]
        held_rows.loc[decided_rows, "_partner"] = partner[final_row]
        held_rows.loc[decided_rows, "_matched_by"] = matched_by[final_row]
        held_rows.loc[decided_rows, "_done"] = True
        partner = _at(row_numbers, event_row, -1)
        held_events.loc[decided_events, "_status"] = event_status[final_event]
        held_events.loc[decided_events, "_partner"] = partner[final_event]
        held_events.loc[decided_events, "_done"] = True
        held_events.loc[copies_now, "_status"] = _COPY
        held_events.loc[copies_now, "_done"] = True
        decided_events = np.sort(np.concatenate([decided_events, copies_now]))
        unexplained = event_numbers[final_event][event_status[final_event] == _UNEXPLAINED]
        if len(unexplained):
            held_events.loc[unexplained, "_reason"] = self._reasons(end, lookahead, unexplained)
        decided = held_rows.loc[decided_rows], held_events.loc[decided_events]
        context = end - 2 * settings.reach  # decided ones earlier than this are done with
        self._rows = held_rows[~(held_rows["_done"] & (held_rows["_time"] < context))]
        self._events = held_events[~(held_events["_done"] & (held_events["_time"] < context))]
        return decided

    def _reasons(self, end: int, lookahead: int, unexplained: np.ndarray) -> np.ndarray:
        """REASONS codes of these events (numbers), judged by everything near, decided or not."""
        settings = self.settings
        low = end - settings.block_ms - 2 * settings.reach
        rows, events = self._rows, self._events
        row_time, event_time = rows["_time"].to_numpy(), events["_time"].to_numpy()
        asked = events.loc[unexplained]
        names = asked["transaction_id"].astype(object)
        owners = asked["subscription"].astype(object)
        # Only what can bear on them: rows of their subscriptions or ids, events of their ids.
        near_rows = rows[
            (row_time >= low)
            & (row_time < end + lookahead)
            & (
                rows["subscription"].astype(object).isin(owners).to_numpy(dtype=bool)
                | rows["transaction_id"].astype(object).isin(names).to_numpy(dtype=bool)
            )
        ]
        near_events = events[
            (event_time >= low)
            & (event_time < end + lookahead + settings.max_delay_ms)
            & events["transaction_id"].astype(object).isin(names).to_numpy(dtype=bool)
        ]
        row_side, event_side, _ = read_sides(
            near_rows.reset_index(drop=True), near_events.reset_index(drop=True), settings
        )
        where = np.searchsorted(near_events.index.to_numpy(), unexplained)
        return reasons(row_side, event_side, where, settings).astype(np.int8)


def _keys(events: pd.DataFrame) -> tuple[EventKey, ...]:
    """The events' identities (EventKey), in order."""
    names = [
        [None if pd.isna(value) else str(value) for value in events[column].astype(object)]
        for column in ("transaction_id", "subscription")
    ]
    return tuple(zip(*names, events["_time"].astype(np.int64).tolist(), strict=True))


def _at(values: np.ndarray, positions: np.ndarray, absent: object) -> np.ndarray:
    """values[positions], `absent` where a position is -1."""
    found = np.full(len(positions), absent, dtype=values.dtype)
    hit = positions >= 0
    found[hit] = values[positions[hit]]
    return found


def _numbered(frame: pd.DataFrame, time: str, first: int) -> pd.DataFrame:
    """The frame numbered from `first`, with the columns the pass keeps beside the input's."""
    times = numbers(frame[time])
    if not np.isfinite(times).all():
        raise ValueError(f"{time} has missing values: every row and event has a time")
    return frame.set_axis(pd.RangeIndex(first, first + len(frame))).assign(
        _time=times.astype(np.int64),
        _done=False,
        _status=np.int8(0),
        _partner=np.int64(-1),
        _matched_by=np.int8(0),
        _reason=np.int8(0),
        _copy=False,
    )


def _result(parts: list[tuple[pd.DataFrame, pd.DataFrame]]) -> MatchResult:
    """The decided rows and events as a MatchResult, indexed by their numbers."""
    rows, events = (_joined([part[side] for part in parts]) for side in (0, 1))
    return MatchResult(
        rows=rows.drop(columns=[name for name in rows.columns if name.startswith("_")]).assign(
            status=categories(rows["_status"], ROW_STATUSES),
            event=rows["_partner"].astype(np.int64),
            matched_by=categories(rows["_matched_by"], MATCHED_BY),
        ),
        events=events.drop(
            columns=[name for name in events.columns if name.startswith("_")]
        ).assign(
            status=categories(events["_status"], EVENT_STATUSES),
            row=events["_partner"].astype(np.int64),
            reason=categories(events["_reason"], REASONS),
        ),
    )


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one after the other; empty ones count only when all are (the last is kept)."""
    full = [frame for frame in frames if len(frame)]
    if not full:
        return frames[-1]
    return full[0] if len(full) == 1 else pd.concat(full)


def categories(codes: pd.Series, names: list[str]) -> pd.Series:
    """Codes as a categorical column: a million statuses without a million strings."""
    return pd.Series(
        pd.Categorical.from_codes(codes.to_numpy(np.int8), categories=pd.Index(names)),
        index=codes.index,
    )
