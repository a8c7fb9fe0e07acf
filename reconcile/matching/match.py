"""Match spend-log rows to Lago events: by transaction id, else by fingerprint; pure and vectorised.

Rule by rule (each row gets at most one event, each event at most one row):
1. ClickHouse-store copies with the same (transaction_id, subscription, timestamp) are one.
2. An event whose transaction_id and subscription are a row's is that row's (events reconcile
   sent). Events with reconcile's id prefix match only so.
3. Events from LiteLLM's live callback (random ids, Lago's reception time, no request id)
   match by fingerprint: the same subscription; the same model (as the callback names it),
   token counts and cost (alike within the tolerance) wherever both sides know them (a null
   or absent property is unknown, never a mismatch); a time within [endTime - skew, endTime +
   max_delay]. As many rows as possible are billed (a maximum matching over each hour and two
   reaches after it, see reconcile.matching.stream); then the closest in time wins, ties going
   to the earlier row, then the smaller request_id.
Rows outside the window take part (so their events are not called unexplained) but are never
reported missing. Unmatched events inside the window are unexplained, with a reason.
"""

from __future__ import annotations

import pandas as pd

from reconcile.matching.sides import EVENT_COLUMNS, ROW_COLUMNS, require
from reconcile.matching.stream import StreamMatch
from reconcile.matching.types import MatchResult, MatchSettings


def match(rows: pd.DataFrame, events: pd.DataFrame, settings: MatchSettings) -> MatchResult:
    """Match every row and event: the forward pass (reconcile.matching.stream) over all at once.

    rows: transaction_id, request_id, subscription, model, prompt_tokens, completion_tokens,
    total_tokens, cost (USD), end_ms (Unix ms), in_window, and optionally custom_llm_provider
    and alternate_id; events: transaction_id, subscription, model, the three token counts,
    cost, timestamp_ms. Both with a default RangeIndex; any dtype pandas or Arrow gives (nulls
    are unknown). Raises ValueError on a missing column or a repeated row transaction_id.
    """
    require(rows, ROW_COLUMNS, "rows")
    require(events, EVENT_COLUMNS, "events")
    stream = StreamMatch(settings)
    early = stream.add(rows, events, rows_until_ms=-1 << 62, events_until_ms=-1 << 62)
    late = stream.finish()
    decided_rows = pd.concat([early.rows, late.rows]).sort_index()
    decided_events = pd.concat([early.events, late.events]).sort_index()
    return MatchResult(
        rows=rows.assign(**{name: decided_rows[name].array for name in _ROW_RESULTS}),
        events=events.assign(**{name: decided_events[name].array for name in _EVENT_RESULTS}),
    )


_ROW_RESULTS = ("status", "event", "matched_by")
_EVENT_RESULTS = ("status", "row", "reason")
