"""Matching spend-log rows to Lago events: `match` and what it takes and gives."""

from reconcile.matching.match import match
from reconcile.matching.types import (
    EVENT_STATUSES,
    MATCHED_BY,
    REASONS,
    ROW_STATUSES,
    EventStatus,
    MatchResult,
    MatchSettings,
    Reason,
    RowStatus,
)

__all__ = [
    "EVENT_STATUSES",
    "MATCHED_BY",
    "REASONS",
    "ROW_STATUSES",
    "EventStatus",
    "MatchResult",
    "MatchSettings",
    "Reason",
    "RowStatus",
    "match",
]
