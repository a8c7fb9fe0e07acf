"""Read, list, match: a window's spend logs and Lago's events, matched. Sends nothing."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.expected import Expected, expected_events
from reconcile.lago.client import LagoClient
from reconcile.lago.events import arrow_page, frame
from reconcile.matching import MatchResult, MatchSettings, match
from reconcile.postgres import Database
from reconcile.settings import JobSettings
from reconcile.spendlogs.read import open_snapshot, read_window
from reconcile.window import Window, duration_ms, to_ms

log = logging.getLogger(__name__)

#: The rows' columns the matcher reads, under its names.
ROW_COLUMNS = {
    "transaction_id": "transaction_id",
    "alternate_id": "alternate_id",
    "litellm_request_id": "request_id",
    "external_subscription_id": "subscription",
    "model": "model",
    "custom_llm_provider": "custom_llm_provider",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "total_tokens": "total_tokens",
    "cost": "cost",
    "end_ms": "end_ms",
    "in_window": "in_window",
}


class Stopwatch:
    """Seconds per stage, into a dict, with one log line each."""

    def __init__(self, seconds: dict[str, float] | None = None, *, level: int = logging.INFO):
        self.seconds = {} if seconds is None else seconds
        self.level = level

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the block as `stage`."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 3)
            log.log(self.level, "stage %s took %.1f s", stage, self.seconds[stage])


def read_and_match(
    database: Database,
    client: LagoClient,
    settings: JobSettings,
    *,
    now: dt.datetime,
    clock: Stopwatch | None = None,
    observe: Callable[[pa.Table], None] | None = None,
) -> tuple[Expected, MatchResult]:
    """The window's expected events and Lago's, matched.

    `observe` sees every classified row of the window itself (all classes, margins left out).
    Lago is listed over `Expected.listing`: never past `now - settings.settle`.
    """
    clock = clock or Stopwatch()
    with clock("read spend logs"), open_snapshot(database) as connection:

        def read(window: Window, ended_since: dt.datetime | None) -> Iterator[pa.Table]:
            return read_window(
                connection,
                database,
                settings.charge_by,
                window,
                chunk_rows=settings.chunk_rows,
                ended_since=ended_since,
            )

        expected = expected_events(
            read,
            window=settings.window,
            margins=settings.margins,
            settle_point=now - settings.settle,
            code=settings.code,
            customers=settings.customers,
            observe=observe,
        )
    with clock("list Lago events"):
        events = lago_events(client, settings.code, expected.listing, settings.customers)
    with clock("match"):
        result = match(rows_frame(expected), events, match_settings(settings))
    return expected, result


def lago_events(
    client: LagoClient, code: str, listing: Window, customers: frozenset[str]
) -> pd.DataFrame:
    """Lago's events of `code` over `listing` (both edges in), of `customers` if any."""
    if not customers:
        return frame(client.list_slices(code, listing, arrow_page))
    frames = [
        frame(client.list_slices(code, listing, arrow_page, subscription=customer))
        for customer in sorted(customers)
    ]
    return pd.concat(frames, ignore_index=True)


def rows_frame(expected: Expected) -> pd.DataFrame:
    """The expected events as the matcher reads rows (ROW_COLUMNS)."""
    table = expected.events.select(list(ROW_COLUMNS))
    for name in ("external_subscription_id", "model", "custom_llm_provider"):
        # Few distinct values: categories, not a million strings.
        position = table.column_names.index(name)
        table = table.set_column(position, name, pc.dictionary_encode(table.column(name)))
    rows: pd.DataFrame = table.to_pandas(types_mapper=_arrow_strings)
    return rows.rename(columns=ROW_COLUMNS)


def _arrow_strings(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """Strings stay in Arrow's buffers: a million ids are not copied into pandas' own."""
    return pd.ArrowDtype(arrow_type) if arrow_type == pa.string() else None


def match_settings(settings: JobSettings) -> MatchSettings:
    """The matcher's settings for a job, in Unix milliseconds."""
    margins = settings.margins
    return MatchSettings(
        since_ms=to_ms(settings.window.since),
        until_ms=to_ms(settings.window.until),
        skew_ms=duration_ms(margins.skew),
        max_delay_ms=duration_ms(margins.max_delay),
    )
