"""What Lago should hold for a window: the events its billable rows call for, margins included."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.attribute import Tally, billable, classify
from reconcile.build_events import EVENT_SCHEMA, build_events
from reconcile.window import Window, to_ms

log = logging.getLogger(__name__)

EXPECTED_SCHEMA = EVENT_SCHEMA.append(pa.field("in_window", pa.bool_()))


@dataclasses.dataclass(frozen=True)
class Expected:
    """Expected events (EXPECTED_SCHEMA), and the tally of the window's own rows read."""

    events: pa.Table
    tally: Tally

    @property
    def in_window(self) -> np.ndarray:
        """Which events are for rows whose "startTime" is in the window (not its margins)."""
        return self.events.column("in_window").to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def expected_chunk(
    rows: pa.Table,
    *,
    window: Window,
    code: str,
    customers: frozenset[str] = frozenset(),
) -> tuple[pa.Table, pa.Table]:
    """One chunk of read rows: its expected events (EXPECTED_SCHEMA) and the window's own rows.

    The own rows are the classified rows whose "startTime" is in the window (all classes, of
    `customers` if any): those the window tallies. The events are of every billable row, the
    margins' included, `in_window` telling which are the window's own.
    """
    bounds = (to_ms(window.since), to_ms(window.until))
    wanted = pa.array(sorted(customers), pa.string())
    classified = classify(rows)
    start = classified.column("start_ms").to_numpy()
    mine = (start >= bounds[0]) & (start < bounds[1])
    if customers:
        mine &= _among(classified.column("charge_by_id"), wanted)
    own = classified.filter(pa.array(mine))
    # Ids from every row: rows sharing a call id and millisecond decide each other's.
    events = build_events(billable(classified), code)
    if customers:
        events = events.filter(pa.array(_among(events.column("external_subscription_id"), wanted)))
    start = events.column("start_ms").to_numpy()
    inside = (start >= bounds[0]) & (start < bounds[1])
    return events.append_column("in_window", pa.array(inside)), own


def _among(ids: pa.ChunkedArray, wanted: pa.Array) -> np.ndarray:
    found: np.ndarray = pc.fill_null(pc.is_in(ids, value_set=wanted), False).to_numpy(
        zero_copy_only=False
    )
    return found
