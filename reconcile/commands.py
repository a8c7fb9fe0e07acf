"""One plain function per CLI command: what tests, notebooks and the CLI all call."""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections import Counter
from typing import BinaryIO

import numpy as np

from reconcile.attribute import Tally, billable, classify, tally
from reconcile.build_events import EVENT_SCHEMA, build_events, write_csv, write_jsonl
from reconcile.postgres import Database
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import DEFAULT_CHUNK_ROWS, open_snapshot, read_window
from reconcile.transaction_id import IdBasis
from reconcile.window import Window

log = logging.getLogger(__name__)


class EventFormat(enum.StrEnum):
    """How `events` writes its output."""

    JSONL = "jsonl"
    CSV = "csv"


@dataclasses.dataclass(frozen=True)
class EventsSummary:
    """What `events` read and wrote: the classes of the window's rows and the ids it built."""

    source: str
    window: Window
    charge_by: ChargeBy
    code: str
    tally: Tally
    events: int
    id_basis: dict[IdBasis, int]
    seconds: float


def events(
    database: Database,
    *,
    window: Window,
    charge_by: ChargeBy,
    code: str,
    sink: BinaryIO,
    output_format: EventFormat = EventFormat.JSONL,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> EventsSummary:
    """Write the Lago events the window's billable rows call for; return what was read."""
    started = time.monotonic()
    totals = Tally()
    basis: Counter[IdBasis] = Counter()
    written = 0
    if output_format is EventFormat.CSV:
        write_csv(EVENT_SCHEMA.empty_table(), sink, header=True)
    with open_snapshot(database) as connection:
        for rows in read_window(connection, database, charge_by, window, chunk_rows=chunk_rows):
            classified = classify(rows)
            totals += tally(classified)
            batch = build_events(billable(classified), code)
            if output_format is EventFormat.CSV:
                write_csv(batch, sink, header=False)
            else:
                write_jsonl(batch, sink)
            written += batch.num_rows
            counts = np.bincount(batch.column("id_basis").to_numpy(), minlength=len(IdBasis))
            basis.update({member: int(counts[member]) for member in IdBasis})
            log.debug("read %s rows, built %s events", f"{totals.rows:,}", f"{written:,}")
    return EventsSummary(
        source=str(database),
        window=window,
        charge_by=charge_by,
        code=code,
        tally=totals,
        events=written,
        id_basis=dict(basis),
        seconds=time.monotonic() - started,
    )
