"""Matching by fingerprint: as many rows as possible, each to an event alike in every billed way.

Among requests with one fingerprint (subscription, model, tokens, cost) the rows and events
are interchangeable for billing; what must hold is that as many rows as possible get an event,
or a row is backfilled while an event that could have billed it stays unused: billed twice.
So within a fingerprint, events take rows in time order, each the earliest row still free in
its window [time - max_delay, time + skew] (which is a maximum matching for windows of equal
length), and then moves to a closer free row when one lies before the next taken row (so the
row reported missing is the one the event least likely came from). Fingerprints with one row
and one event, most of them, are settled without a Python loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from reconcile.match import MatchSettings

TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def fingerprint_pairs(
    rows: pd.DataFrame,
    events: pd.DataFrame,
    free_rows: np.ndarray,
    free_events: np.ndarray,
    settings: MatchSettings,
    *,
    exact: bool,
) -> np.ndarray:
    """(row, event) pairs for free events, one pass per set of token fields the events carry."""
    costed = free_events & events["cost"].notna().to_numpy()
    # Which token fields each event carries, as bits: one small int per event (a row-wise
    # np.unique over the boolean columns sorts a million rows and costs far more).
    shapes = np.zeros(len(events), dtype=np.int8)
    for bit, name in enumerate(TOKENS):
        shapes |= events[name].notna().to_numpy().astype(np.int8) << bit
    free_rows = free_rows.copy()
    found: list[np.ndarray] = []
    for shape in np.flatnonzero(np.bincount(shapes[costed], minlength=1 << len(TOKENS))):
        event_index = np.flatnonzero(costed & (shapes == shape))
        tokens = [name for bit, name in enumerate(TOKENS) if shape >> bit & 1]
        columns = ["subscription", "model", *tokens, *(["cost"] if exact else [])]
        pairs = _assign(rows, events, np.flatnonzero(free_rows), event_index, columns, settings)
        free_rows[pairs[:, 0]] = False
        found.append(pairs)
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def _assign(
    rows: pd.DataFrame,
    events: pd.DataFrame,
    row_index: np.ndarray,
    event_index: np.ndarray,
    columns: list[str],
    settings: MatchSettings,
) -> np.ndarray:
    """One-to-one (row, event) pairs with equal `columns`, cost within tolerance, time in window."""
    row_key, event_key = equal_keys(rows, row_index, events, event_index, columns)
    end = rows["end_ms"].to_numpy(dtype=np.int64)[row_index]
    time = events["timestamp_ms"].to_numpy(dtype=np.int64)[event_index]
    row_cost = rows["cost"].to_numpy(dtype=np.float64)[row_index]
    event_cost = events["cost"].to_numpy(dtype=np.float64)[event_index]
    reach = max(settings.skew_ms, settings.max_delay_ms)
    row_key, event_key = _bursts(row_key, end, event_key, time, reach)
    # Ties in time are broken by request_id and transaction_id, only where they matter below.
    row_order = np.argsort(_by_key_then_time(row_key, end))
    event_order = np.argsort(_by_key_then_time(event_key, time))
    sorted_row_keys, sorted_event_keys = row_key[row_order], event_key[event_order]
    starts = np.flatnonzero(np.r_[True, sorted_event_keys[1:] != sorted_event_keys[:-1]])
    stops = np.r_[starts[1:], len(event_order)]
    firsts = np.searchsorted(sorted_row_keys, sorted_event_keys[starts], side="left")
    lasts = np.searchsorted(sorted_row_keys, sorted_event_keys[starts], side="right")
    window = _Window(end, time, row_cost, event_cost, settings)
    # Most fingerprints have as many events as rows, each event in its row's window: the
    # k-th event then bills the k-th row (in time order). Settle those at once.
    in_step = _in_step(starts, stops, firsts, lasts, row_order, event_order, window)
    chosen = [np.column_stack(in_step[0])]
    single = in_step[1]
    pairs: list[tuple[int, int]] = []
    groups = [
        (row_order[first:last].tolist(), event_order[start:stop].tolist())
        for start, stop, first, last in zip(
            starts[~single], stops[~single], firsts[~single], lasts[~single], strict=True
        )
        if last > first
    ]
    if groups:  # ties in time go to the smaller request_id, then transaction_id
        row_rank = _ranks(end, rows["request_id"], row_index, groups, 0)
        event_rank = _ranks(time, events["transaction_id"], event_index, groups, 1)
        for group_rows, group_events in groups:
            group_rows.sort(key=row_rank.__getitem__)
            group_events.sort(key=event_rank.__getitem__)
            pairs.extend(window.assign(group_rows, group_events))
    if pairs:
        chosen.append(np.array(pairs, dtype=np.int64))
    both = np.concatenate(chosen)
    return np.column_stack([row_index[both[:, 0]], event_index[both[:, 1]]])


def _bursts(
    row_key: np.ndarray, end: np.ndarray, event_key: np.ndarray, time: np.ndarray, reach: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keys split where a fingerprint's rows and events pause for longer than `reach` ms.

    No row can pair with an event across such a pause, so each burst is matched on its own:
    a request repeated all day splits into many small bursts, most settled at once.
    """
    if not len(row_key) or not len(event_key):
        return row_key, event_key
    key = np.concatenate([row_key, event_key])
    moment = np.concatenate([end, time])
    order = np.argsort(_by_key_then_time(key, moment))
    key, moment = key[order], moment[order]
    new_burst = np.r_[True, (key[1:] != key[:-1]) | (np.diff(moment) > reach)]
    burst = np.empty(len(order), dtype=np.int64)
    burst[order] = np.cumsum(new_burst) - 1
    return burst[: len(row_key)], burst[len(row_key) :]


def _ranks(
    time: np.ndarray,
    names: pd.Series,
    index: np.ndarray,
    groups: list[tuple[list[int], list[int]]],
    side: int,
) -> dict[int, int]:
    """For the rows (side 0) or events (side 1) of `groups`: their rank by (time, name)."""
    involved = np.unique(
        np.concatenate([np.asarray(group[side], dtype=np.int64) for group in groups])
    )
    table = pa.table(
        {"time": time[involved], "name": pa.array(names.iloc[index[involved]], pa.string())}
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
    """Pairs of the fingerprints whose k-th event fits their k-th row, and which those are."""
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


def _by_key_then_time(key: np.ndarray, time: np.ndarray) -> np.ndarray:
    """One int64 that sorts by key, then time (one argsort instead of a slower lexsort)."""
    if not len(key):
        return key
    offset = time - time.min()  # a window's span in ms: far below 2**40
    combined: np.ndarray = key.astype(np.int64) * (1 << 40) + offset
    return combined


class _Window:
    """Which row may bill which event, and the in-order assignment within one fingerprint."""

    def __init__(
        self,
        end: np.ndarray,
        time: np.ndarray,
        row_cost: np.ndarray,
        event_cost: np.ndarray,
        settings: MatchSettings,
    ) -> None:
        self.end, self.time, self.row_cost, self.event_cost = end, time, row_cost, event_cost
        self.skew, self.max_delay = settings.skew_ms, settings.max_delay_ms
        self.tolerance = settings.cost_tolerance

    def fit(self, row: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Whether each event may bill its row: time and cost within bounds."""
        # By slices: a million pairs at once would hold a dozen temporaries of 8 MB each.
        step = 1 << 18
        parts = [
            self._fit(row[start : start + step], event[start : start + step])
            for start in range(0, len(row), step)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

    def _fit(self, row: np.ndarray, event: np.ndarray) -> np.ndarray:
        gap = self.time[event] - self.end[row]
        row_cost, event_cost = self.row_cost[row], self.event_cost[event]
        alike = np.abs(row_cost - event_cost) <= self.tolerance * np.maximum(
            np.abs(row_cost), np.abs(event_cost)
        )
        fitting: np.ndarray = (gap >= -self.skew) & (gap <= self.max_delay) & alike
        return fitting

    def assign(self, rows: list[int], events: list[int]) -> list[tuple[int, int]]:
        """Pairs for one fingerprint: rows sorted by end, events by time."""
        end = dict(zip(rows, self.end[rows].tolist(), strict=True))
        time = dict(zip(events, self.time[events].tolist(), strict=True))
        row_cost = dict(zip(rows, self.row_cost[rows].tolist(), strict=True))
        event_cost = dict(zip(events, self.event_cost[events].tolist(), strict=True))

        def may(row: int, event: int) -> bool:
            gap, costs = time[event] - end[row], (row_cost[row], event_cost[event])
            alike = abs(costs[0] - costs[1]) <= self.tolerance * max(map(abs, costs))
            return bool(-self.skew <= gap <= self.max_delay and alike)

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
        # From the last pair back, each moves to a closer free row before the next pair's row:
        # as many rows billed, and the row reported missing is the one least likely billed.
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


def equal_keys(
    left: pd.DataFrame,
    left_index: np.ndarray,
    right: pd.DataFrame,
    right_index: np.ndarray,
    columns: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """For the chosen rows of each frame, one small int64 per row: equal keys, equal `columns`.

    Column by column, so that only one column of each side is ever copied at a time; the
    combined codes are renumbered only when the next column could overflow them.
    """
    combined = np.zeros(len(left_index) + len(right_index), dtype=np.int64)
    bound = 1  # combined < bound
    for column in columns:
        codes, count = _codes(left[column].iloc[left_index], right[column].iloc[right_index])
        if bound * (count + 1) >= 1 << 62:
            combined, uniques = pd.factorize(combined)
            bound = len(uniques)
        combined = combined * (count + 1) + (codes + 1)  # missing (-1) is a value of its own
        bound *= count + 1
    combined, _ = pd.factorize(combined)
    return combined[: len(left_index)], combined[len(left_index) :]


def _codes(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, int]:
    """Codes in [0, count) of the values of both columns, equal for equal values (missing: -1)."""
    if isinstance(left.dtype, pd.CategoricalDtype) or isinstance(right.dtype, pd.CategoricalDtype):
        # Categories of each side (a handful of subscriptions or models), merged: no strings hashed.
        union = pd.api.types.union_categoricals(
            [pd.Categorical(left), pd.Categorical(right)], ignore_order=True
        )
        return union.codes.astype(np.int64), len(union.categories)
    both = pd.concat([left, right], ignore_index=True)
    if pd.api.types.is_integer_dtype(both.dtype) and both.notna().any():
        # Token counts: a small range, so the value less the minimum is already a code.
        low, high = int(both.min()), int(both.max())
        if high - low < 1 << 31:
            return both.sub(low).fillna(-1).to_numpy(dtype=np.int64), high - low + 1
    codes, uniques = pd.factorize(both)
    return codes, len(uniques)


def nearest_rows(
    rows: pd.DataFrame,
    row_index: np.ndarray,
    row_key: np.ndarray,
    events: pd.DataFrame,
    event_index: np.ndarray,
    event_key: np.ndarray,
    settings: MatchSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """For each event, the nearest row with its key (a position in row_index, or -1).

    Nearest: the endTime closest to the event's time within [time - max_delay, time + skew].
    Also returns the distances.
    """
    end = rows["end_ms"].to_numpy(dtype=np.int64)[row_index]
    time = events["timestamp_ms"].to_numpy(dtype=np.int64)[event_index]
    left = pd.DataFrame({"key": event_key, "time": time, "position": np.arange(len(event_index))})
    left = left.sort_values("time", kind="stable")
    order = np.argsort(end, kind="stable")
    right = pd.DataFrame({"key": row_key[order], "end": end[order], "row": order})
    searches: tuple[tuple[Literal["backward", "forward"], int], ...] = (
        ("backward", settings.max_delay_ms),
        ("forward", settings.skew_ms),
    )
    found = []
    for direction, tolerance in searches:
        merged = pd.merge_asof(
            left,
            right,
            left_on="time",
            right_on="end",
            by="key",
            direction=direction,
            tolerance=tolerance,
        ).sort_values("position")
        row = merged["row"].fillna(-1).to_numpy(dtype=np.int64)
        distance = np.full(len(row), np.iinfo(np.int64).max, dtype=np.int64)
        hit = row >= 0
        distance[hit] = np.abs(merged["time"].to_numpy(dtype=np.int64)[hit] - end[row[hit]])
        found.append((row, distance))
    (back, back_distance), (forward, forward_distance) = found
    use_forward = forward_distance < back_distance  # on a tie, the earlier row
    return (
        np.where(use_forward, forward, back),
        np.where(use_forward, forward_distance, back_distance),
    )
