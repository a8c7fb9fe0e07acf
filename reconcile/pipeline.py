"""What the pass shares: stage timing, the rows as the matcher reads them, its settings."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching import MatchSettings
from reconcile.settings import JobSettings
from reconcile.window import duration_ms, to_ms

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
    """Seconds per stage (summed over its turns), into a dict, with a log line each turn."""

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
            took = time.monotonic() - started
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + took, 3)
            log.log(self.level, "stage %s took %.1f s", stage, took)


def rows_frame(events: pa.Table) -> pd.DataFrame:
    """Expected events (reconcile.expected's schema) as the matcher reads rows (ROW_COLUMNS)."""
    table = events.select(list(ROW_COLUMNS))
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
        block_ms=duration_ms(settings.slice),
    )
