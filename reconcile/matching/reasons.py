"""Why an event inside the window bills no row: a duplicate, a property mismatch, or no request."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.graph import alike
from reconcile.matching.keys import combine, expand, time_ranges
from reconcile.matching.sides import FIELDS, Side, positions, whole
from reconcile.matching.types import REASONS, MatchSettings, Reason


def reasons(
    rows: Side, events: Side, unexplained: np.ndarray, settings: MatchSettings
) -> np.ndarray:
    """For each unexplained event (positions), its code in REASONS.

    duplicate: a row near its time is alike in every known way (whether or not something else
    bills it), or its transaction id is a row's of the same subscription, or another listed
    event's; property mismatch: a row of its subscription is near (also when the event's cost
    is one Lago cannot sum), or its transaction id is a row's under another subscription;
    else no such request.
    """
    codes = np.full(len(unexplained), REASONS.index(Reason.NO_SUCH_REQUEST), dtype=np.int8)
    if not len(unexplained):
        return codes
    # Lookups are built over the unexplained events (few) and probed with everything else.
    ids = pc.cast(whole(events.transaction_id.take(pa.array(unexplained, pa.int64()))), pa.string())
    row_hits = positions(rows.transaction_id, ids)  # per row: the unexplained event with its id
    hit = np.flatnonzero(row_hits >= 0)
    row_of_id = np.full(len(unexplained), -1, dtype=np.int64)
    row_of_id[row_hits[hit]] = hit  # row ids are unique: at most one row per id
    has_row = row_of_id >= 0
    same_subscription = np.zeros(len(unexplained), dtype=bool)
    same_subscription[has_row] = (
        rows.subscription[row_of_id[has_row]] == events.subscription[unexplained[has_row]]
    )
    event_hits = positions(events.transaction_id, ids)
    listed = np.bincount(event_hits[event_hits >= 0], minlength=len(ids))
    listed_twice = listed[positions(ids, ids)] > 1
    near = _near(rows, events, unexplained, rows.subscription, events.subscription, settings)
    lookalike = _lookalike(rows, events, unexplained, settings) & ~events.unbillable[unexplained]
    codes[near | (has_row & ~same_subscription)] = REASONS.index(Reason.PROPERTY_MISMATCH)
    codes[lookalike | (has_row & same_subscription) | listed_twice] = REASONS.index(
        Reason.DUPLICATE
    )
    return codes


def _near(
    rows: Side,
    events: Side,
    unexplained: np.ndarray,
    row_key: np.ndarray,
    event_key: np.ndarray,
    settings: MatchSettings,
) -> np.ndarray:
    """Whether a row with each event's key (a subscription at least) ends near its time."""
    time = events.time[unexplained]
    _, start, stop = time_ranges(
        row_key, rows.time, event_key[unexplained],
        time - settings.max_delay_ms, time + settings.skew_ms,
    )  # fmt: skip
    found: np.ndarray = (stop > start) & (events.subscription[unexplained] >= 0)
    return found


def _lookalike(
    rows: Side, events: Side, unexplained: np.ndarray, settings: MatchSettings
) -> np.ndarray:
    """Whether a row near each event agrees with it on everything both know.

    Rows are looked up by the fields the event and the row both know (their shapes), the cost
    by its cluster: only rows that already agree are compared pair by pair, however busy the
    subscription.
    """
    found = np.zeros(len(unexplained), dtype=bool)
    # Only the rows of these events' subscriptions can be alike: usually a small part.
    near = np.flatnonzero(np.isin(rows.subscription, events.subscription[unexplained]))
    event_shape, row_shape = events.shape[unexplained], rows.shape[near]
    for event_kind in np.unique(event_shape).tolist():
        chosen = np.flatnonzero(event_shape == event_kind)
        for row_kind in np.unique(row_shape).tolist():
            candidates = near[row_shape == row_kind]
            common = [field for field in range(len(FIELDS)) if (event_kind & row_kind) >> field & 1]
            asked = unexplained[chosen]
            columns = [
                np.concatenate([rows.subscription[candidates], events.subscription[asked]]),
                *(np.concatenate([rows.values[field][candidates], events.values[field][asked]])
                  for field in common),
            ]  # fmt: skip
            key = combine(columns, len(candidates) + len(chosen))
            time = events.time[unexplained[chosen]]
            order, start, stop = time_ranges(
                key[: len(candidates)], rows.time[candidates], key[len(candidates) :],
                time - settings.max_delay_ms, time + settings.skew_ms,
            )  # fmt: skip
            query, position = expand(start, stop)
            row, event = candidates[order[position]], unexplained[chosen[query]]
            same = alike(rows, events, row, event, settings.cost_tolerance)
            found[chosen[query[same]]] = True
    return found
