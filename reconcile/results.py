"""Result types: what a run found and did, and the report as data (a line per customer, period)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import pandas as pd

from reconcile.attribute import Tally
from reconcile.money import ZERO
from reconcile.settings import ChargeBy, JobSettings
from reconcile.transaction_id import IdBasis
from reconcile.window import Window

UNATTRIBUTED = ""
"""The `customer` of the line that gathers rows with no charge-by id."""


class Status(enum.StrEnum):
    """How a line compares, by the report's tolerance."""

    OK = "ok"
    UNDER_BILLED = "under-billed"
    """Events are missing, or LiteLLM recorded more than Lago holds beyond the tolerance."""
    OVER_BILLED = "over-billed"
    """Lago holds unexplained events, or more than LiteLLM recorded beyond the tolerance."""


@dataclasses.dataclass(frozen=True)
class Line:
    """One customer (charge-by id) in one period. Money in USD, exact Decimals."""

    customer: str
    period: str  # "2026-11-01" (by day) or "2026-11" (by month), in the report's time zone
    # From LiteLLM's spend logs (rows whose "startTime" falls in the period)
    requests: int = 0
    billable_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend: Decimal = ZERO  # billable spend: what Lago should bill
    # From Lago
    matched_events: int = 0
    matched_cost: Decimal = ZERO
    # Missing in Lago: still to backfill; of which, in a period whose invoice is finalized
    missing_events: int = 0
    missing_spend: Decimal = ZERO
    not_recoverable_events: int = 0
    not_recoverable_spend: Decimal = ZERO
    # Backfilled by reconcile (from the ledger), whatever Lago holds now
    backfilled_events: int = 0
    backfilled_spend: Decimal = ZERO
    backfill_runs: tuple[int, ...] = ()
    # Unexplained events in Lago (never deleted), in all and by reason
    unexplained_events: int = 0
    unexplained_cost: Decimal = ZERO
    duplicate_events: int = 0
    duplicate_cost: Decimal = ZERO
    property_mismatch_events: int = 0
    property_mismatch_cost: Decimal = ZERO
    no_such_request_events: int = 0
    no_such_request_cost: Decimal = ZERO
    # Not billable
    unattributable_requests: int = 0
    unattributable_spend: Decimal = ZERO
    failed_requests_with_spend: int = 0
    failed_spend: Decimal = ZERO
    negative_cost_requests: int = 0  # succeeded with a cost below zero: never sent as a credit
    negative_cost_spend: Decimal = ZERO
    # Comparison
    lago_cost: Decimal = ZERO  # matched + unexplained: everything Lago holds
    delta: Decimal = ZERO  # spend - lago_cost: > 0 under-billed, < 0 over-billed
    delta_percent: Decimal | None = None  # delta / spend * 100; None when spend is 0
    status: Status = Status.OK


class RollupState(enum.StrEnum):
    """What the cross-check of LiteLLM's daily rollup against its spend logs could compare."""

    COMPARED = "compared"
    """Rollup rows were found for the window's whole UTC days and compared (gaps or not)."""
    NO_ROWS = "no rollup rows"
    """The rollup table holds no row for those days (of those customers): nothing compared."""
    NO_TABLE = "no rollup table"
    """LiteLLM's database has no rollup table of the charge-by mode."""
    NOT_READABLE = "rollup not readable"
    """The role reading the spend logs may not read the rollup table (no SELECT grant)."""
    NO_WHOLE_DAY = "no whole UTC day"
    """The window holds no whole UTC day, the rollup's unit."""
    NOT_CHECKED = "not checked"
    """Not a report of a window (a run's summary)."""


@dataclasses.dataclass(frozen=True)
class RollupGap:
    """A UTC day where LiteLLM's daily rollup holds more spend than its spend logs."""

    customer: str
    day: dt.date
    rollup_requests: int
    rollup_spend: Decimal
    spend_log_requests: int
    spend_log_spend: Decimal

    @property
    def lost_spend(self) -> Decimal:
        """Spend in the rollup and not in the rows: lost or deleted, not recoverable."""
        return self.rollup_spend - self.spend_log_spend


@dataclasses.dataclass(frozen=True)
class DailySpend:
    """One day (report time zone) of LiteLLM's billable spend and what Lago holds: the chart."""

    day: dt.date
    litellm_spend: Decimal
    lago_cost: Decimal


@dataclasses.dataclass(frozen=True)
class Header:
    """What the report covers and where it read it; no secrets."""

    since: dt.datetime  # aware, in the report's time zone; included
    until: dt.datetime  # excluded
    timezone: str
    by: str  # "day" or "month"
    charge_by: str
    code: str
    generated_at: dt.datetime  # aware UTC
    version: str
    source: str  # the spend-log database, password masked
    lago: str  # Lago's base URL
    customers: tuple[str, ...] = ()  # the --customer filter, if any
    tolerance: Decimal = Decimal("0.01")


@dataclasses.dataclass(frozen=True)
class Report:
    """Lines sorted by impact (under-billed, then over-billed, then ok), totals and checks."""

    header: Header
    lines: Sequence[Line]
    totals: Line  # customer "TOTAL", period "" : sums of every line
    daily: Sequence[DailySpend]
    rollup_gaps: Sequence[RollupGap]
    notes: Sequence[str] = ()  # e.g. "Lago's invoices could not be read: ..."
    rollup_state: RollupState = RollupState.NOT_CHECKED
    rollup_days: int = 0  # customer-days of the rollup compared with the spend logs
    absent_customers: tuple[str, ...] = ()  # --customer ids with no row nor event in the window
    backfilled_by: str = "any run, from the ledger"  # whose backfills `backfilled` counts

    @property
    def exceptions(self) -> list[Line]:
        """Lines that are not ok."""
        return [line for line in self.lines if line.status is not Status.OK]

    @property
    def failed_check(self) -> bool:
        """What `--check` alerts on (exit 3).

        Missing or unexplained events, a delta past tolerance, or a rollup gap (spend that
        LiteLLM's rollup holds and its spend logs lost).
        """
        return bool(self.exceptions or self.rollup_gaps)


LINE_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Line))
"""The CSV columns, in this order: a stable contract (documented in the README)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The backfill about to happen: for a confirmation prompt and the dry-run listing."""

    count: int
    """Events to send."""
    spend: Decimal
    by_customer: pd.DataFrame  # subscription, events, spend
    sample: tuple[dict[str, Any], ...] = ()
    """The first few of them, as they would be sent."""


class Share(NamedTuple):
    """A worker's share of a run cut into parts."""

    done_here: int
    total: int
    finished_here: bool


@dataclasses.dataclass
class RunSummary:
    """What a run found and did; `counts()` is what the ledger keeps. Money: exact USD."""

    run_id: int | None
    settings: JobSettings
    tally: Tally
    expected: int = 0
    listed: int = 0
    matched_by_id: int = 0
    matched_by_fingerprint: int = 0
    missing: int = 0
    missing_spend: Decimal = ZERO
    too_recent: int = 0
    """Missing rows held back: their callback events may still arrive (endTime + max delay is
    after now - settle)."""
    too_recent_spend: Decimal = ZERO
    sent: int = 0
    sent_spend: Decimal = ZERO
    already_in_lago: int = 0
    unsent: int = 0
    before_this_month: int = 0
    unexplained: dict[str, tuple[int, Decimal]] = dataclasses.field(default_factory=dict)
    lago_requests: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    plan: Plan | None = None
    lines: list[Line] = dataclasses.field(default_factory=list)
    """Per customer and UTC day, as `reconcile report` shows them, after this run's sending."""
    covered_until: dt.datetime | None = None
    """For a nightly run that left nothing behind: where the next one may start from."""
    parts: Share = dataclasses.field(default_factory=lambda: Share(1, 1, True))
    """The parts of the run this process did, of how many; whether it recorded the run's end
    (then the summary is the whole run's, else this worker's parts')."""

    @property
    def left_unsent(self) -> int:
        """Missing events unsent for another reason than being too recent (dry run, limit, no)."""
        return self.unsent - self.too_recent

    @property
    def complete(self) -> bool:
        """Whether the run did all it should (else exit 3).

        For `run`, rows held back as too recent are the next night's; a backfill still owes them.
        """
        owed = self.left_unsent if self.settings.mode == "run" else self.unsent
        return owed == 0

    def counts(self) -> dict[str, Any]:
        """The summary as the ledger's `counts` JSON (money as exact decimal strings)."""
        return {
            "rows": {
                member.value: {
                    "rows": part.rows,
                    "spend": str(part.spend),
                    "rows_with_spend": part.rows_with_spend,
                }
                for member, part in self.tally.by_class.items()
            },
            "expected": self.expected,
            "listed": self.listed,
            "matched_by_id": self.matched_by_id,
            "matched_by_fingerprint": self.matched_by_fingerprint,
            "missing": self.missing,
            "missing_spend": str(self.missing_spend),
            "too_recent": self.too_recent,
            "too_recent_spend": str(self.too_recent_spend),
            "sent": self.sent,
            "sent_spend": str(self.sent_spend),
            "already_in_lago": self.already_in_lago,
            "unsent": self.unsent,
            "unexplained": {
                reason: {"events": count, "cost": str(cost)}
                for reason, (count, cost) in self.unexplained.items()
            },
            "lago_requests": self.lago_requests,
            "seconds": self.seconds,
        }


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
