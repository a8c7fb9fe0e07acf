"""Match spend-log rows to Lago events: by transaction id, else by fingerprint; pure and vectorised.

Rule by rule (each row gets at most one event, each event at most one row):
1. ClickHouse-store copies with the same (transaction_id, subscription, timestamp) are one.
2. An event whose transaction_id and subscription are a row's is that row's (events reconcile
   sent). Events with reconcile's id prefix match only so.
3. Events from LiteLLM's live callback (random ids, Lago's reception time, no request id)
   match by fingerprint: the same subscription; the same model (as the callback names it),
   token counts and cost (alike within the tolerance) wherever both sides know them (a null
   or absent property is unknown, never a mismatch); a time within [endTime - skew, endTime +
   max_delay]. As many rows as possible are billed (a maximum matching); then the closest in
   time wins, ties going to the earlier row, then the smaller request_id.
Rows outside the window take part (so their events are not called unexplained) but are never
reported missing. Unmatched events inside the window are unexplained, with a reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.graph import match_graph
from reconcile.matching.groups import partition
from reconcile.matching.in_time import match_in_time
from reconcile.matching.reasons import reasons
from reconcile.matching.sides import Side, flags, positions, read_sides, whole
from reconcile.matching.types import (
    EVENT_STATUSES,
    MATCHED_BY,
    REASONS,
    ROW_STATUSES,
    EventStatus,
    MatchResult,
    MatchSettings,
)
from reconcile.transaction_id import PREFIX


def match(rows: pd.DataFrame, events: pd.DataFrame, settings: MatchSettings) -> MatchResult:
    """Match every row and event.

    rows: transaction_id, request_id, subscription, model, prompt_tokens, completion_tokens,
    total_tokens, cost (USD), end_ms (Unix ms), in_window, and optionally custom_llm_provider;
    events: transaction_id, subscription, model, the three token counts, cost, timestamp_ms.
    Both with a default RangeIndex; any dtype pandas or Arrow gives (nulls are unknown).
    Raises ValueError on a missing column or a repeated row transaction_id.
    """
    row_side, event_side, in_window = read_sides(rows, events, settings)
    row_event = np.full(len(rows), -1, dtype=np.int64)
    event_row = np.full(len(events), -1, dtype=np.int64)
    matched_by = np.zeros(len(rows), dtype=np.int8)
    copy = _copies(event_side)

    ours = flags(pc.starts_with(event_side.transaction_id, PREFIX))
    by_id = _match_by_id(row_side, event_side, np.flatnonzero(ours & ~copy))
    row_event[by_id[:, 0]], event_row[by_id[:, 1]] = by_id[:, 1], by_id[:, 0]
    by_alternate = _match_by_alternate_id(
        row_side,
        event_side,
        np.flatnonzero(row_event < 0),
        np.flatnonzero(ours & ~copy & (event_row < 0)),
    )
    row_event[by_alternate[:, 0]], event_row[by_alternate[:, 1]] = (
        by_alternate[:, 1],
        by_alternate[:, 0],
    )
    matched_by[row_event >= 0] = MATCHED_BY.index("id")
    free_rows = np.flatnonzero(row_event < 0)
    free_events = np.flatnonzero((event_row < 0) & ~copy & ~ours & ~event_side.unbillable)
    pairs = _fingerprint_pairs(row_side, event_side, free_rows, free_events, settings)
    row_event[pairs[:, 0]], event_row[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    matched_by[pairs[:, 0]] = MATCHED_BY.index("fingerprint")

    row_status = np.where(row_event >= 0, 0, np.where(in_window, 1, 2))  # ROW_STATUSES order
    inside = (event_side.time >= settings.since_ms) & (event_side.time < settings.until_ms)
    partner_in_window = np.zeros(len(events), dtype=bool)
    partner_in_window[event_row >= 0] = in_window[event_row[event_row >= 0]]
    event_status = np.select(  # EVENT_STATUSES order
        [copy, event_row >= 0, ~inside],
        [2, np.where(partner_in_window, 0, 1), 4],
        default=3,
    )
    reason = np.zeros(len(events), dtype=np.int8)  # REASONS order, 0: none
    unexplained = np.flatnonzero(event_status == EVENT_STATUSES.index(EventStatus.UNEXPLAINED))
    reason[unexplained] = reasons(row_side, event_side, unexplained, settings)
    return MatchResult(
        rows=rows.assign(
            status=_categories(row_status, ROW_STATUSES),
            event=row_event,
            matched_by=_categories(matched_by, MATCHED_BY),
        ),
        events=events.assign(
            status=_categories(event_status, EVENT_STATUSES),
            row=event_row,
            reason=_categories(reason, REASONS),
        ),
    )


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


def _categories(codes: np.ndarray, names: list[str]) -> pd.Categorical[str]:
    """Codes as a categorical column: a million statuses without a million strings."""
    categorical: pd.Categorical[str] = pd.Categorical.from_codes(
        codes.astype(np.int8), categories=pd.Index(names)
    )
    return categorical


def _copies(events: Side) -> np.ndarray:
    """True for every repeat of a (transaction_id, subscription, timestamp) already listed."""
    copy = np.zeros(len(events), dtype=bool)
    # Copies share their timestamp: look only at the events whose millisecond repeats.
    values, counts = np.unique(events.time, return_counts=True)
    shared = np.flatnonzero(np.isin(events.time, values[counts > 1]))
    if len(shared):
        ids = pc.dictionary_encode(whole(events.transaction_id.take(pa.array(shared, pa.int64()))))
        frame = pd.DataFrame(
            {
                "id": pc.fill_null(ids.indices, -1).to_numpy(zero_copy_only=False),
                "subscription": events.subscription[shared],
                "time": events.time[shared],
            }
        )
        copy[shared] = frame.duplicated(keep="first").to_numpy()
    return copy


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
