"""Matching a group in time order: every event alike, so only times decide, and greed is exact.

Within a group any event may bill any row whose time window holds it ([endTime - skew,
endTime + max_delay]; windows of equal length). Events then take rows in time order, each the
earliest row still free in its window: as many rows are billed as any matching could bill.
Then, from the last pair back, each event moves to a closer free row lying before the next
taken row: as many rows billed, and the row reported missing is the one least likely billed.
Ties in time go to the smaller request_id (rows) and transaction_id (events). Groups with as
many events as rows, each event in its row's window (most of them), are settled at once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.keys import order_by
from reconcile.matching.sides import Side
from reconcile.matching.types import MatchSettings

Part = tuple[np.ndarray, np.ndarray]  # positions, and the group of each


def match_in_time(
    rows: Side, events: Side, row_part: Part, event_part: Part, settings: MatchSettings
) -> np.ndarray:
    """(row, event) position pairs, one-to-one, within each group."""
    (row_index, row_key), (event_index, event_key) = row_part, event_part
    if not len(row_index) or not len(event_index):
        return np.zeros((0, 2), dtype=np.int64)
    end, time = rows.time[row_index], events.time[event_index]
    row_key, event_key = _bursts(row_key, end, event_key, time, settings.reach)
    row_order, event_order = order_by(row_key, end), order_by(event_key, time)
    sorted_row_keys, sorted_event_keys = row_key[row_order], event_key[event_order]
    starts = np.flatnonzero(np.r_[True, sorted_event_keys[1:] != sorted_event_keys[:-1]])
    stops = np.r_[starts[1:], len(event_order)]
    firsts = np.searchsorted(sorted_row_keys, sorted_event_keys[starts], side="left")
    lasts = np.searchsorted(sorted_row_keys, sorted_event_keys[starts], side="right")
    window = _Window(end, time, settings)
    (row, event), settled = _in_step(starts, stops, firsts, lasts, row_order, event_order, window)
    chosen = [np.column_stack([row, event])]
    groups = [
        (row_order[first:last].tolist(), event_order[start:stop].tolist())
        for start, stop, first, last in zip(
            starts[~settled], stops[~settled], firsts[~settled], lasts[~settled], strict=True
        )
        if last > first
    ]
    if groups:
        row_rank = _ranks(end, rows.name, row_index, groups, 0)
        event_rank = _ranks(time, events.name, event_index, groups, 1)
        pairs: list[tuple[int, int]] = []
        for group_rows, group_events in groups:
            group_rows.sort(key=row_rank.__getitem__)
            group_events.sort(key=event_rank.__getitem__)
            pairs.extend(window.assign(group_rows, group_events))
        if pairs:
            chosen.append(np.array(pairs, dtype=np.int64))
    both = np.concatenate(chosen).astype(np.int64)
    return np.column_stack([row_index[both[:, 0]], event_index[both[:, 1]]])


def _bursts(
    row_key: np.ndarray, end: np.ndarray, event_key: np.ndarray, time: np.ndarray, reach: int
) -> tuple[np.ndarray, np.ndarray]:
    """Groups split where their rows and events pause for longer than `reach` ms.

    No row can pair with an event across such a pause, so each burst is matched on its own:
    a request repeated all day splits into many small bursts, most settled at once.
    """
    key = np.concatenate([row_key, event_key])
    moment = np.concatenate([end, time])
    order = order_by(key, moment)
    key, moment = key[order], moment[order]
    new_burst = np.r_[True, (key[1:] != key[:-1]) | (np.diff(moment) > reach)]
    burst = np.empty(len(order), dtype=np.int64)
    burst[order] = np.cumsum(new_burst) - 1
    return burst[: len(row_key)], burst[len(row_key) :]


def _ranks(
    time: np.ndarray,
    names: pa.Array,
    index: np.ndarray,
    groups: list[tuple[list[int], list[int]]],
    side: int,
) -> dict[int, int]:
    """For the rows (side 0) or events (side 1) of `groups`: their rank by (time, name)."""
    involved = np.unique(
        np.concatenate([np.asarray(group[side], dtype=np.int64) for group in groups])
    )
    table = pa.table(
        {"time": time[involved], "name": names.take(pa.array(index[involved], pa.int64()))}
    )
    order = pc.sort_indices(table, sort_keys=[("time", "ascending"), ("name", "ascending")])
    rank = np.empty(len(involved), dtype=np.int64)
    rank[order.to_numpy()] = np.arange(len(involved))
    return dict(zip(involved.tolist(), rank.tolist(), strict=True))


def _in_step(
    starts: np.ndarray,
    stops: np.ndarray,
    firsts: np.ndarray,
    lasts: np.ndarray,
    row_order: np.ndarray,
    event_order: np.ndarray,
    window: _Window,
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Pairs of the groups whose k-th event fits their k-th row, and which groups those are."""
    lengths = stops - starts
    candidates = np.flatnonzero(lengths == lasts - firsts)
    sizes = lengths[candidates]
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    row = row_order[np.repeat(firsts[candidates], sizes) + within]
    event = event_order[np.repeat(starts[candidates], sizes) + within]
    fit = window.fit(row, event)
    group_fits = np.minimum.reduceat(fit, np.cumsum(sizes) - sizes) if len(sizes) else fit
    settled = np.zeros(len(starts), dtype=bool)
    settled[candidates[group_fits.astype(bool)]] = True
    keep = np.repeat(group_fits.astype(bool), sizes)
    return (row[keep], event[keep]), settled


class _Window:
    """Which row's window holds which event, and the in-order assignment within one group."""

    def __init__(self, end: np.ndarray, time: np.ndarray, settings: MatchSettings) -> None:
        self.end, self.time = end, time
        self.skew, self.max_delay = settings.skew_ms, settings.max_delay_ms

    def fit(self, row: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Whether each event's time lies in its row's window."""
        gap = self.time[event] - self.end[row]
        fitting: np.ndarray = (gap >= -self.skew) & (gap <= self.max_delay)
        return fitting

    def assign(self, rows: list[int], events: list[int]) -> list[tuple[int, int]]:
        """Pairs for one group: rows sorted by end, events by time."""
        end = dict(zip(rows, self.end[rows].tolist(), strict=True))
        time = dict(zip(events, self.time[events].tolist(), strict=True))

        def may(row: int, event: int) -> bool:
            return bool(-self.skew <= time[event] - end[row] <= self.max_delay)

        taken = [False] * len(rows)
        chosen: list[tuple[int, int]] = []  # (position in rows, event)
        cursor = 0
        for event in events:
            # Taken rows, and rows ending before this event's window, serve no later event.
            while cursor < len(rows) and (
                taken[cursor] or end[rows[cursor]] < time[event] - self.max_delay
            ):
                cursor += 1
            position = cursor
            while position < len(rows) and end[rows[position]] <= time[event] + self.skew:
                if not taken[position] and may(rows[position], event):
                    taken[position] = True
                    chosen.append((position, event))
                    break
                position += 1
        limit = len(rows)
        for index in range(len(chosen) - 1, -1, -1):
            position, event = chosen[index]
            best = position
            for later in range(position + 1, limit):
                closer = abs(time[event] - end[rows[later]]) < abs(time[event] - end[rows[best]])
                if not taken[later] and may(rows[later], event) and closer:
                    best = later
            taken[position], taken[best] = False, True
            chosen[index] = (best, event)
            limit = best
        return [(rows[position], event) for position, event in chosen]
