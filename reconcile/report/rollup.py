"""LiteLLM's daily rollup against its spend logs: spend the rollup holds and the rows lost."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from reconcile.money import ZERO
from reconcile.postgres import Database
from reconcile.results import RollupGap, RollupState
from reconcile.settings import ChargeBy
from reconcile.spendlogs.rollup import DailySums, read_daily_sums
from reconcile.window import UTC, Window


def whole_days(window: Window) -> tuple[dt.date, dt.date] | None:
    """The first and last UTC day wholly inside the window; None when there is none."""
    first = window.since.astimezone(UTC).date()
    if window.since.astimezone(UTC) > dt.datetime.combine(first, dt.time(), UTC):
        first += dt.timedelta(days=1)
    last = window.until.astimezone(UTC).date() - dt.timedelta(days=1)
    return None if last < first else (first, last)


def rollup_gaps(
    database: Database,
    window: Window,
    charge_by: ChargeBy,
    customers: frozenset[str],
    tolerance: Decimal,
    notes: list[str],
) -> tuple[RollupState, int, list[RollupGap]]:
    """UTC days (wholly in the window) where the daily rollup holds more than the spend logs.

    Returns what could be compared, how many customer-days of the rollup were, and the gaps.
    """
    days = whole_days(window)
    if days is None:
        return RollupState.NO_WHOLE_DAY, 0, []
    return compare(read_daily_sums(database, charge_by, *days), customers, tolerance, notes)


def compare(
    sums: DailySums, customers: frozenset[str], tolerance: Decimal, notes: list[str]
) -> tuple[RollupState, int, list[RollupGap]]:
    """The gaps of `sums`: where the rollup holds more than the spend logs.

    A customer-day is a gap when the rollup counts more requests, or more spend (beyond
    `tolerance`), than the spend logs. Notes say what could not be compared.
    """
    if not sums.readable:
        notes.append(
            f'this role may not read "{sums.table}": the rollup cross-check was skipped (grant '
            f'it SELECT on "{sums.table}" to compare LiteLLM\'s daily rollup with its spend logs)'
        )
        return RollupState.NOT_READABLE, 0, []
    if sums.rollup is None:
        notes.append(f'no "{sums.table}" table: the rollup cross-check was skipped')
        return RollupState.NO_TABLE, 0, []
    rollup, logs = sums.rollup, sums.spend_logs
    if customers:
        rollup = {key: value for key, value in rollup.items() if key[0] in customers}
    gaps, unsummable = [], 0
    for key, (requests, spend) in sorted(rollup.items()):
        log_requests, log_spend = logs.get(key, (0, ZERO))
        summable = spend.is_finite()  # a NaN or infinite cost poisons the rollup's sum for good
        unsummable += not summable
        lost = spend - log_spend > tolerance if summable else False  # then requests only
        if lost or requests > log_requests:
            day = dt.date.fromisoformat(key[1])
            gaps.append(RollupGap(key[0], day, requests, spend, log_requests, log_spend))
    if unsummable:
        notes.append(
            f"LiteLLM's daily rollup holds a NaN or infinite spend for {unsummable:,} "
            "customer-day(s) (a request with such a cost was added to it): their requests "
            "were compared, not their spend"
        )
    return (RollupState.COMPARED if rollup else RollupState.NO_ROWS), len(rollup), gaps
