"""What Lago should hold for a window: the events its billable rows call for, margins included."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.attribute import Tally, billable, classify, tally
from reconcile.build_events import EVENT_SCHEMA, build_events
from reconcile.postgres import Database
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import DEFAULT_CHUNK_ROWS, open_snapshot, read_window
from reconcile.window import Window


@dataclasses.dataclass(frozen=True)
class Expected:
    """The events (EVENT_SCHEMA plus `in_window`) and the tally of the window's own rows."""

    events: pa.Table
    tally: Tally

    @property
    def in_window(self) -> np.ndarray:
        """Which events are for rows whose "startTime" is in the window (not its margins)."""
        return self.events.column("in_window").to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def read_expected(
    database: Database,
    *,
    window: Window,
    margin: dt.timedelta,
    charge_by: ChargeBy,
    code: str,
    customers: frozenset[str] = frozenset(),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    observe: Callable[[pa.Table], None] | None = None,
) -> Expected:
    """Read [since - margin, until + margin) in one snapshot; tally only [since, until).

    The rows in the margins are the neighbours' own: the matcher weighs them so their events
    are not taken for this window's, but they are never backfilled from here.
    """
    since_ms, until_ms = (int(edge.timestamp() * 1000) for edge in (window.since, window.until))
    wide = Window(window.since - margin, window.until + margin)
    totals = Tally()
    chunks: list[pa.Table] = []
    with open_snapshot(database) as connection:
        wanted = pa.array(sorted(customers), pa.string())
        for chunk in read_window(connection, database, charge_by, wide, chunk_rows=chunk_rows):
            rows = (
                chunk.filter(pc.is_in(chunk.column("charge_by_id"), wanted)) if customers else chunk
            )
            classified = classify(rows)
            start = classified.column("start_ms").to_numpy()
            inside = (start >= since_ms) & (start < until_ms)
            own = classified.filter(pa.array(inside))
            totals += tally(own)
            if observe is not None:
                observe(own)
            events = build_events(billable(classified), code)
            start = events.column("start_ms").to_numpy()
            chunks.append(
                events.append_column(
                    "in_window", pa.array((start >= since_ms) & (start < until_ms))
                )
            )
    schema = EVENT_SCHEMA.append(pa.field("in_window", pa.bool_()))
    return Expected(
        events=pa.concat_tables(chunks) if chunks else schema.empty_table(), tally=totals
    )
