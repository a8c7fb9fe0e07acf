"""Why an event inside the window bills no row: a duplicate, a property mismatch, or no request."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.graph import alike
from reconcile.matching.keys import expand, time_ranges
from reconcile.matching.sides import Side
from reconcile.matching.types import REASONS, MatchSettings, Reason

#: Candidate (event, row) pairs looked at in one go: bounded memory whatever the window holds.
_PAIRS_AT_ONCE = 1 << 22


def reasons(
    rows: Side, events: Side, unexplained: np.ndarray, settings: MatchSettings
) -> np.ndarray:
    """For each unexplained event (positions), its code in REASONS.

    duplicate: a row near its time is alike in every known way (whether or not something else
    bills it), or its transaction id is a row's of the same subscription, or another listed
    event's; property mismatch: a row of its subscription is near, or its transaction id is a
    row's under another subscription; else no such request.
    """
    codes = np.full(len(unexplained), REASONS.index(Reason.NO_SUCH_REQUEST), dtype=np.int8)
    if not len(unexplained):
        return codes
    near, lookalike = _neighbours(rows, events, unexplained, settings)
    # Lookups are built over the unexplained events (few) and probed with everything else.
    ids = pc.cast(events.transaction_id.take(pa.array(unexplained, pa.int64())), pa.string())
    row_hits = _positions(rows.transaction_id, ids)  # per row: the unexplained event with its id
    hit = np.flatnonzero(row_hits >= 0)
    row_of_id = np.full(len(unexplained), -1, dtype=np.int64)
    row_of_id[row_hits[hit]] = hit  # row ids are unique: at most one row per id
    has_row = row_of_id >= 0
    same_subscription = np.zeros(len(unexplained), dtype=bool)
    same_subscription[has_row] = (
        rows.subscription[row_of_id[has_row]] == events.subscription[unexplained[has_row]]
    )
    event_hits = _positions(events.transaction_id, ids)
    listed_twice = (
        np.bincount(event_hits[event_hits >= 0], minlength=len(ids))[_positions(ids, ids)] > 1
    )
    codes[near | (has_row & ~same_subscription)] = REASONS.index(Reason.PROPERTY_MISMATCH)
    codes[lookalike | (has_row & same_subscription) | listed_twice] = REASONS.index(
        Reason.DUPLICATE
    )
    return codes


def _positions(values: pa.Array, lookup: pa.Array) -> np.ndarray:
    """For each value, the position of its first occurrence in `lookup`, or -1."""
    found = pc.index_in(values, value_set=pc.cast(lookup, values.type))
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _neighbours(
    rows: Side, events: Side, unexplained: np.ndarray, settings: MatchSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Whether a row of each event's subscription is near its time, and whether one is alike."""
    time = events.time[unexplained]
    order, start, stop = time_ranges(
        rows.subscription,
        rows.time,
        events.subscription[unexplained],
        time - settings.max_delay_ms,
        time + settings.skew_ms,
    )
    usable = events.subscription[unexplained] >= 0
    near = (stop > start) & usable
    lookalike = np.zeros(len(unexplained), dtype=bool)
    sizes = np.where(usable, stop - start, 0)
    cut = np.searchsorted(
        np.cumsum(sizes), np.arange(_PAIRS_AT_ONCE, sizes.sum() + 1, _PAIRS_AT_ONCE)
    )
    for part in np.split(np.arange(len(unexplained)), cut):
        query, position = expand(start[part], np.where(usable[part], stop[part], start[part]))
        if not len(query):
            continue
        same = alike(
            rows, events, order[position], unexplained[part][query], settings.cost_tolerance
        )
        lookalike[part[np.unique(query[same])]] = True
    return near, lookalike
