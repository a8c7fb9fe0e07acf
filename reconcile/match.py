"""Match spend-log rows to Lago events: by transaction id, else by fingerprint; pure and vectorised.

Rule by rule (each row gets at most one event, each event at most one row):
1. ClickHouse-store copies with the same (transaction_id, subscription, timestamp) are one.
2. An event whose transaction_id is a row's is that row's (events reconcile sent).
3. Events from LiteLLM's live callback (random ids, Lago's reception time, no request id)
   match by fingerprint: same subscription and model, the same token counts where the event
   has them, response_cost equal within 1e-9 relative, and a time within [endTime - skew,
   endTime + max_delay]. Closest in time wins; ties go to the earlier row, then the smaller
   request_id. Exact costs are matched first, then costs within the tolerance.
Rows just outside the window take part (so their events are not called unexplained) but are
never reported missing. Unmatched events inside the window are unexplained, with a reason.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.fingerprint import TOKENS, equal_keys, fingerprint_pairs, nearest_rows

ROW_COLUMNS = (
    "transaction_id",
    "request_id",
    "subscription",
    "model",
    *TOKENS,
    "cost",
    "end_ms",
    "in_window",
)
EVENT_COLUMNS = ("transaction_id", "subscription", "model", *TOKENS, "cost", "timestamp_ms")


class RowStatus(enum.StrEnum):
    """What became of a billable row."""

    BILLED = "billed"
    """An event in Lago bills it."""
    MISSING = "missing"
    """In the window and no event bills it: to backfill."""
    NEIGHBOUR = "neighbour"
    """Outside the window: its own window's run decides."""


class EventStatus(enum.StrEnum):
    """What a Lago event turned out to be."""

    MATCHED = "matched"
    NEIGHBOUR = "neighbour"
    """It bills a row outside the window."""
    COPY = "copy"
    """A second copy of an event (ClickHouse store): billed once."""
    UNEXPLAINED = "unexplained"
    OUTSIDE = "outside"
    """Listed for the margins, timestamp outside the window, no row of ours: not our business."""


class Reason(enum.StrEnum):
    """Why an event inside the window bills no row."""

    DUPLICATE = "duplicate"
    """Another event already bills the request it looks like, or has its transaction id."""
    PROPERTY_MISMATCH = "property mismatch"
    """A request of that subscription is near, but model, tokens or cost differ."""
    NO_SUCH_REQUEST = "no such request"
    """No spend-log row of that subscription near its time."""


@dataclasses.dataclass(frozen=True)
class MatchSettings:
    """The window on "startTime" (Unix ms, half-open) and how far event times may stray."""

    since_ms: int
    until_ms: int
    skew_ms: int
    max_delay_ms: int
    cost_tolerance: float = 1e-9


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """`rows` and `events` as given, plus status columns, and the pairs that were matched."""

    rows: (
        pd.DataFrame
    )  # + status, event (index into events, -1), matched_by ("id"|"fingerprint"|"")
    events: pd.DataFrame  # + status, row (index into rows, -1), reason

    @property
    def missing(self) -> pd.DataFrame:
        """Rows to backfill."""
        return self.rows[self.rows["status"] == RowStatus.MISSING]

    @property
    def unexplained(self) -> pd.DataFrame:
        """Events in the window that bill no row."""
        return self.events[self.events["status"] == EventStatus.UNEXPLAINED]


def match(rows: pd.DataFrame, events: pd.DataFrame, settings: MatchSettings) -> MatchResult:
    """Match every row and event; both frames need a default RangeIndex."""
    row_event = np.full(len(rows), -1, dtype=np.int64)
    event_row = np.full(len(events), -1, dtype=np.int64)
    matched_by = np.zeros(len(rows), dtype=np.int8)  # MATCHED_BY codes
    copy = _copies(events)

    by_id = _match_by_id(rows, events, copy)
    row_event[by_id[:, 0]], event_row[by_id[:, 1]] = by_id[:, 1], by_id[:, 0]
    matched_by[by_id[:, 0]] = 1
    for exact in (True, False):
        pairs = fingerprint_pairs(
            rows, events, row_event < 0, (event_row < 0) & ~copy, settings, exact=exact
        )
        row_event[pairs[:, 0]], event_row[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
        matched_by[pairs[:, 0]] = 2

    in_window = rows["in_window"].to_numpy(dtype=bool)
    row_status = np.where(row_event >= 0, 0, np.where(in_window, 1, 2))  # ROW_STATUSES order
    timestamp = events["timestamp_ms"].to_numpy(dtype=np.int64)
    inside = (timestamp >= settings.since_ms) & (timestamp < settings.until_ms)
    partner_in_window = np.zeros(len(events), dtype=bool)
    partner_in_window[event_row >= 0] = in_window[event_row[event_row >= 0]]
    event_status = np.select(  # EVENT_STATUSES order
        [copy, event_row >= 0, ~inside],
        [2, np.where(partner_in_window, 0, 1), 4],
        default=3,
    )
    reasons = np.zeros(len(events), dtype=np.int8)  # REASONS order, 0: none
    unexplained = np.flatnonzero(event_status == 3)
    reasons[unexplained] = _reasons(rows, events, unexplained, settings)
    return MatchResult(
        rows=rows.assign(
            status=_categories(row_status, ROW_STATUSES),
            event=row_event,
            matched_by=_categories(matched_by, MATCHED_BY),
        ),
        events=events.assign(
            status=_categories(event_status, EVENT_STATUSES),
            row=event_row,
            reason=_categories(reasons, REASONS),
        ),
    )


ROW_STATUSES = [RowStatus.BILLED.value, RowStatus.MISSING.value, RowStatus.NEIGHBOUR.value]
EVENT_STATUSES = [
    EventStatus.MATCHED.value,
    EventStatus.NEIGHBOUR.value,
    EventStatus.COPY.value,
    EventStatus.UNEXPLAINED.value,
    EventStatus.OUTSIDE.value,
]
REASONS = ["", Reason.DUPLICATE.value, Reason.PROPERTY_MISMATCH.value, Reason.NO_SUCH_REQUEST.value]
MATCHED_BY = ["", "id", "fingerprint"]


def _categories(codes: np.ndarray, names: list[str]) -> pd.Categorical[str]:
    """Codes as a categorical column: a million statuses without a million strings."""
    categorical: pd.Categorical[str] = pd.Categorical.from_codes(
        codes.astype(np.int8), categories=pd.Index(names)
    )
    return categorical


def _copies(events: pd.DataFrame) -> np.ndarray:
    """True for every repeat of a (transaction_id, subscription, timestamp) already listed."""
    copy = np.zeros(len(events), dtype=bool)
    # Copies share their timestamp: look at the few events whose millisecond repeats.
    stamps = events["timestamp_ms"].to_numpy(dtype=np.int64)
    values, counts = np.unique(stamps, return_counts=True)
    shared = np.flatnonzero(np.isin(stamps, values[counts > 1]))
    if len(shared):
        subset = events[["transaction_id", "subscription", "timestamp_ms"]].iloc[shared]
        copy[shared] = subset.duplicated(keep="first").to_numpy()
    return copy


def _match_by_id(rows: pd.DataFrame, events: pd.DataFrame, copy: np.ndarray) -> np.ndarray:
    """(row, event) pairs sharing a transaction id; of several events, the first listed."""
    # Only ids of the shape rows have can match (the callback's are uuids): a small set.
    prefixes = tuple(rows["transaction_id"].str.slice(0, 4).unique()) if len(rows) else ()
    if not prefixes:
        return np.empty((0, 2), dtype=np.int64)
    shaped = events["transaction_id"].str.startswith(prefixes).fillna(False).to_numpy(dtype=bool)
    candidates = np.flatnonzero(shaped & ~copy)
    if not len(candidates):
        return np.empty((0, 2), dtype=np.int64)
    event_ids = pa.array(events["transaction_id"].iloc[candidates], pa.string())
    row_ids = pa.array(rows["transaction_id"], pa.string())
    position = pc.index_in(row_ids, value_set=event_ids).to_numpy(zero_copy_only=False)
    row = np.flatnonzero(~np.isnan(position.astype(np.float64)))
    event = candidates[position[row].astype(np.int64)]  # index_in finds the first listed
    return np.column_stack([row, event]).astype(np.int64).reshape(-1, 2)


def _reasons(
    rows: pd.DataFrame, events: pd.DataFrame, unexplained: np.ndarray, settings: MatchSettings
) -> np.ndarray:
    """Why each unexplained event bills nothing: codes into REASONS."""
    reasons = np.full(len(unexplained), REASONS.index(Reason.NO_SUCH_REQUEST), dtype=np.int8)
    if not len(unexplained):
        return reasons
    listed = events.iloc[unexplained]
    ids = pa.array(listed["transaction_id"], pa.string())
    all_ids = pa.array(events["transaction_id"], pa.string())
    repeated = pc.value_counts(all_ids).filter(
        pc.greater(pc.struct_field(pc.value_counts(all_ids), "counts"), 1)
    )
    known = pa.concat_arrays(
        [pa.array(rows["transaction_id"], pa.string()), repeated.field("values")]
    )
    same_id = pc.is_in(ids, value_set=known).to_numpy(zero_copy_only=False)
    # Only the rows of these events' subscriptions can be near them.
    near_rows = np.flatnonzero(
        rows["subscription"].isin(set(listed["subscription"].dropna())).to_numpy()
    )
    nearest = []
    for columns in (["subscription", "model", *TOKENS, "cost"], ["subscription"]):
        row_key, event_key = equal_keys(rows, near_rows, events, unexplained, columns)
        row, _ = nearest_rows(rows, near_rows, row_key, events, unexplained, event_key, settings)
        nearest.append(row >= 0)
    lookalike, same_subscription = nearest
    reasons[same_subscription] = REASONS.index(Reason.PROPERTY_MISMATCH)
    reasons[lookalike | same_id] = REASONS.index(Reason.DUPLICATE)
    return reasons
