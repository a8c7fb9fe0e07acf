"""Who bills whom in one view: by transaction id (rules 2), else by fingerprint (rule 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.graph import match_graph
from reconcile.matching.groups import partition
from reconcile.matching.in_time import match_in_time
from reconcile.matching.sides import Side, flags, positions, text, whole
from reconcile.matching.types import MATCHED_BY, MatchSettings
from reconcile.transaction_id import PREFIX


def pair(
    rows: Side, events: Side, settings: MatchSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row its event (position, -1), per event its row (-1), per row MATCHED_BY's code.

    Every event given may bill: copies are left out before. Events with reconcile's id
    prefix match only by id; events Lago cannot sum (unbillable) match nothing.
    """
    row_event = np.full(len(rows), -1, dtype=np.int64)
    event_row = np.full(len(events), -1, dtype=np.int64)
    matched_by = np.zeros(len(rows), dtype=np.int8)
    ours = flags(pc.starts_with(events.transaction_id, PREFIX))
    by_id = _match_by_id(rows, events, np.flatnonzero(ours))
    row_event[by_id[:, 0]], event_row[by_id[:, 1]] = by_id[:, 1], by_id[:, 0]
    by_alternate = _match_by_alternate_id(
        rows, events, np.flatnonzero(row_event < 0), np.flatnonzero(ours & (event_row < 0))
    )
    row_event[by_alternate[:, 0]], event_row[by_alternate[:, 1]] = (
        by_alternate[:, 1],
        by_alternate[:, 0],
    )
    matched_by[row_event >= 0] = MATCHED_BY.index("id")
    free_rows = np.flatnonzero(row_event < 0)
    free_events = np.flatnonzero((event_row < 0) & ~ours & ~events.unbillable)
    pairs = _fingerprint_pairs(rows, events, free_rows, free_events, settings)
    row_event[pairs[:, 0]], event_row[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    matched_by[pairs[:, 0]] = MATCHED_BY.index("fingerprint")
    return row_event, event_row, matched_by


def copies(events: pd.DataFrame) -> np.ndarray:
    """True for every repeat of a (transaction_id, subscription, timestamp) already listed."""
    copy = np.zeros(len(events), dtype=bool)
    time = pd.to_numeric(events["timestamp_ms"], errors="coerce").to_numpy(
        np.float64, na_value=np.nan
    )
    # Copies share their timestamp: look only at the events whose millisecond repeats.
    values, counts = np.unique(time, return_counts=True)
    shared = np.flatnonzero(np.isin(time, values[counts > 1]))
    if len(shared):
        picked = pa.array(shared, pa.int64())
        frame = pd.DataFrame(
            {
                "id": _codes(text(events["transaction_id"]).take(picked)),
                "subscription": _codes(text(events["subscription"]).take(picked), blank=True),
                "time": time[shared],
            }
        )
        copy[shared] = frame.duplicated(keep="first").to_numpy()
    return copy


def _codes(values: pa.Array | pa.ChunkedArray, *, blank: bool = False) -> np.ndarray:
    """Equal codes for equal texts, -1 for null (and for '' if `blank`)."""
    array = whole(values)
    if blank:
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
    encoded = pc.dictionary_encode(array)
    return np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), np.int64)


def _fingerprint_pairs(
    rows: Side,
    events: Side,
    free_rows: np.ndarray,
    free_events: np.ndarray,
    settings: MatchSettings,
) -> np.ndarray:
    split = partition(rows, events, free_rows, free_events)
    in_time = match_in_time(rows, events, split.group_rows, split.group_events, settings)
    as_graph = match_graph(rows, events, split.component_rows, split.component_events, settings)
    return np.concatenate([in_time, as_graph]).astype(np.int64).reshape(-1, 2)


def _match_by_id(rows: Side, events: Side, candidates: np.ndarray) -> np.ndarray:
    """(row, event) pairs sharing transaction id and subscription; of several, the first listed.

    `candidates`: the events that may carry a row's id (reconcile's own, no copies), usually
    few: the lookup is built over them and probed with every row id.
    """
    if not len(rows) or not len(candidates):
        return np.zeros((0, 2), dtype=np.int64)
    ids = events.transaction_id.take(pa.array(candidates, pa.int64()))
    position = positions(rows.transaction_id, ids)  # per row: first candidate with its id
    row = np.flatnonzero(position >= 0)
    if len(np.unique(position[row])) < len(row):
        raise ValueError("rows repeat a transaction_id: every billable row needs its own id")
    event = candidates[position[row]]
    agree = rows.subscription[row] == events.subscription[event]
    pairs = [np.column_stack([row[agree], event[agree]])]
    if not agree.all():  # an id listed again under the row's own subscription (rare)
        by_id: dict[str, list[int]] = {}
        for index, name in zip(candidates.tolist(), ids.to_pylist(), strict=True):
            by_id.setdefault(name, []).append(index)
        names = rows.transaction_id.take(pa.array(row[~agree], pa.int64())).to_pylist()
        for row_position, name in zip(row[~agree].tolist(), names, strict=True):
            same = [
                index
                for index in by_id[name]
                if events.subscription[index] == rows.subscription[row_position]
            ]
            if same:
                pairs.append(np.array([[row_position, same[0]]], dtype=np.int64))
    return np.concatenate(pairs).astype(np.int64).reshape(-1, 2)


def _match_by_alternate_id(
    rows: Side, events: Side, free_rows: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """(row, event) pairs by the other identity of rows sharing a call id and millisecond.

    An event sent while a row stood alone in its millisecond carries the call identity; once
    a row inserted earlier joins it, the row's own id is its request identity. The event still
    bills it if it carries the row's subscription and its very cost.
    """
    with_alternate = free_rows[
        flags(pc.is_valid(rows.alternate_id.take(pa.array(free_rows, pa.int64()))))
    ]
    if not len(with_alternate) or not len(candidates):
        return np.zeros((0, 2), dtype=np.int64)
    alternates = whole(rows.alternate_id.take(pa.array(with_alternate, pa.int64())))
    ids = whole(events.transaction_id.take(pa.array(candidates, pa.int64())))
    position = positions(alternates, ids)
    found = np.flatnonzero(position >= 0)
    row, event = with_alternate[found], candidates[position[found]]
    agree = (rows.subscription[row] == events.subscription[event]) & (
        rows.cost[row] == events.cost[event]
    )
    row, event = row[agree], event[agree]
    _, first = np.unique(event, return_index=True)  # one row per event
    return np.column_stack([row[first], event[first]]).astype(np.int64).reshape(-1, 2)
