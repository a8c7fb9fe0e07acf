"""Build a report: day by day in the report's time zone, read, list, match and sum; never send."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable, Collection, Iterator, Sequence
from decimal import Decimal

import reconcile
from reconcile.errors import ConfigError
from reconcile.forward import forward_pass
from reconcile.lago.client import LagoClient
from reconcile.ledger import DEFAULT_SCHEMA, NoLedger, read_backfilled
from reconcile.margins import DEFAULT_SETTLE, Margins
from reconcile.money import ZERO
from reconcile.postgres import Database
from reconcile.report.aggregate import Tallies, add_matches, observe_rows
from reconcile.report.lines import sorted_lines, totals
from reconcile.report.rollup import rollup_gaps
from reconcile.report.sums import periods
from reconcile.results import (
    UNATTRIBUTED,
    DailySpend,
    Header,
    Line,
    Report,
    RollupGap,
    RunSummary,
)
from reconcile.settings import DEFAULT_CHUNK_ROWS, ChargeBy, JobSettings
from reconcile.window import UTC, Window, from_ms

log = logging.getLogger(__name__)

Periods = Sequence[tuple[dt.datetime, dt.datetime]]
FinalizedPeriods = Callable[[str], Periods | None]
"""A subscription's finalized invoice periods [start, end), or None when Lago has no such one."""
SubscriptionIds = Callable[[], Collection[str]]
"""The external id of every subscription Lago holds, whatever its status."""
NAMED = 10  # customers named in a note; the rest counted


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """What to report on: the window (aware), its time zone, periods and the comparison rules."""

    window: Window
    charge_by: ChargeBy
    code: str
    timezone: str = "UTC"
    by: str = "day"
    customers: frozenset[str] = frozenset()
    tolerance: Decimal = Decimal("0.01")
    margins: Margins = dataclasses.field(default_factory=Margins)
    settle: dt.timedelta = DEFAULT_SETTLE
    chunk_rows: int = DEFAULT_CHUNK_ROWS


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA time zone, or a ConfigError that says how to write one."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"--timezone {name!r} is not a time zone: use an IANA name such as UTC, "
            "Europe/Paris or America/New_York"
        ) from None


def local_days(window: Window, zone: zoneinfo.ZoneInfo) -> Iterator[tuple[dt.date, Window]]:
    """The window cut at local midnights: each part lies in one local day."""
    day = window.since.astimezone(zone).date()
    while True:
        start = max(window.since, dt.datetime.combine(day, dt.time(), zone).astimezone(UTC))
        next_day = day + dt.timedelta(days=1)
        end = min(window.until, dt.datetime.combine(next_day, dt.time(), zone).astimezone(UTC))
        if start >= window.until:
            return
        if end > start:
            yield day, Window(start, end)
        day = next_day


def build_report(
    database: Database,
    client: LagoClient,
    settings: ReportSettings,
    *,
    state: Database | None = None,
    state_schema: str = DEFAULT_SCHEMA,
    finalized: FinalizedPeriods | None = None,
    subscribed: SubscriptionIds | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """The report of `settings.window`; reads the spend logs, Lago and the ledger, sends nothing.

    With `subscribed`, every customer of the window is checked for a subscription in Lago
    (one listing), and those without one are named in a note.
    """
    now = now or dt.datetime.now(UTC)
    zone = time_zone(settings.timezone)
    label = periods(settings.timezone, settings.by)
    notes: list[str] = []
    margin = dt.timedelta(days=1)
    backfilled = _backfilled(state or database, state_schema, settings, margin, notes)
    in_finalized = _finalized_lookup(finalized)
    tallies, daily = Tallies(), []
    started = time.monotonic()
    for day, part in local_days(settings.window, zone):
        log.debug("report: %s", day)  # a long report's days: not a line each in cron's logs
        day_tallies = Tallies()
        job = JobSettings(
            mode="report",
            window=part,
            charge_by=settings.charge_by,
            code=settings.code,
            margins=settings.margins,
            settle=settings.settle,
            customers=settings.customers,
            dry_run=True,
            chunk_rows=settings.chunk_rows,
        )
        for step in forward_pass(
            database, client, job, now=now, observe=observe_rows(day_tallies, label)
        ):
            add_matches(
                day_tallies,
                step.expected,
                step.result,
                label,
                backfilled=backfilled,
                finalized=in_finalized,
            )
        day_lines = day_tallies.lines(settings.tolerance)
        daily.append(
            DailySpend(
                day,
                sum((line.spend for line in day_lines), ZERO),
                sum((line.lago_cost for line in day_lines), ZERO),
            )
        )
        tallies.merge(day_tallies)
    log.info(
        "report: %s day(s) read, listed and matched in %.1f s (%s Lago requests)",
        f"{len(daily):,}", time.monotonic() - started, f"{client.requests:,}",
    )  # fmt: skip
    lines = sorted_lines(tallies.lines(settings.tolerance))
    header = Header(
        since=settings.window.since.astimezone(zone),
        until=settings.window.until.astimezone(zone),
        timezone=settings.timezone,
        by=settings.by,
        charge_by=settings.charge_by.value,
        code=settings.code,
        generated_at=now.astimezone(UTC).replace(microsecond=0),
        version=reconcile.__version__,
        source=str(database),
        lago=client.base_url,
        customers=tuple(sorted(settings.customers)),
        tolerance=settings.tolerance,
    )
    if subscribed is not None:
        notes += unsubscribed_notes(lines, subscribed())
    rollup_state, compared, gaps = rollup_gaps(
        database,
        settings.window,
        settings.charge_by,
        settings.customers,
        settings.tolerance,
        notes,
    )
    summed = totals(lines, settings.tolerance)
    notes += negative_cost_notes(summed)
    absent = absent_customers(settings, lines, gaps)
    notes += [absent_message(absent, settings.charge_by)] if absent else []
    return Report(header, lines, summed, daily, gaps, notes, rollup_state, compared, absent)


def absent_customers(
    settings: ReportSettings, lines: Sequence[Line], gaps: Sequence[RollupGap]
) -> tuple[str, ...]:
    """The --customer ids with no spend-log row (any status) and no Lago event in the window."""
    present = {line.customer for line in lines} | {gap.customer for gap in gaps}
    return tuple(sorted(settings.customers - present))


def absent_message(absent: Sequence[str], charge_by: ChargeBy) -> str:
    """One line naming the --customer ids the window holds nothing for, and the fix."""
    names = ", ".join(repr(name) for name in absent)
    return (
        f"--customer {names}: no spend-log row with that {charge_by.value} and no Lago event "
        "in the window; check the id, the window and LAGO_API_CHARGE_BY"
    )


def unsubscribed_notes(lines: Sequence[Line], subscribed: Collection[str]) -> list[str]:
    """A note naming the customers of the window Lago has no subscription for, if any.

    A customer of the window is one with billable requests or events in Lago: one with only
    failed or unpriced requests has nothing to bill.
    """
    known = set(subscribed)
    billed = {
        line.customer
        for line in lines
        if line.billable_requests or line.matched_events or line.unexplained_events
    }
    lacking = sorted(billed - known - {UNATTRIBUTED})
    if not lacking:
        return []
    named = ", ".join(repr(customer) for customer in lacking[:NAMED])
    more = f" and {len(lacking) - NAMED:,} more" if len(lacking) > NAMED else ""
    return [
        f"Lago has no subscription for {len(lacking):,} customer(s) of the window: {named}{more}; "
        "their events are stored but never billed: create the subscriptions in Lago"
    ]


def negative_cost_notes(summed: Line) -> list[str]:
    """A warning when LiteLLM recorded negative costs, which reconcile never sends."""
    if not summed.negative_cost_requests:
        return []
    return [
        f"{summed.negative_cost_requests:,} succeeded request(s) have a negative cost "
        f"({summed.negative_cost_spend} USD in all): never sent to Lago, as a credit nobody "
        "asked for; check LiteLLM's price for their models"
    ]


def _backfilled(
    state: Database, schema: str, settings: ReportSettings, margin: dt.timedelta, notes: list[str]
) -> dict[str, int]:
    """Transaction id -> run id of what the ledger says reconcile sent around the window."""
    try:
        return read_backfilled(
            state,
            schema,
            code=settings.code,
            charge_by=settings.charge_by.value,
            since=settings.window.since - margin,
            until=settings.window.until + margin,
        )
    except NoLedger:
        notes.append(
            f"no ledger in schema {schema} of {state}: nothing backfilled by reconcile is "
            "recorded there (run `reconcile migrate`, or set --state-database-url/--state-schema)"
        )
    except ConfigError as error:  # a refused read: the report stands without that column
        notes.append(f"the ledger could not be read, so nothing is shown as backfilled: {error}")
    return {}


def _finalized_lookup(finalized: FinalizedPeriods | None) -> Callable[[str, int], bool]:
    """Whether an event time (ms) of a subscription falls in a finalized invoice; cached."""
    cache: dict[str, Periods] = {}

    def in_finalized(customer: str, end_ms: int) -> bool:
        if finalized is None:
            return False
        if customer not in cache:
            cache[customer] = finalized(customer) or ()
        moment = from_ms(end_ms)
        return any(start <= moment < end for start, end in cache[customer])

    return in_finalized


def run_report(summary: RunSummary, *, source: str, lago: str) -> Report:
    """A `reconcile run` or `backfill` as a report (UTC days): what its summary ends with."""
    settings = summary.settings
    lines = list(summary.lines)
    header = Header(
        since=settings.window.since,
        until=settings.window.until,
        timezone="UTC",
        by="day",
        charge_by=settings.charge_by.value,
        code=settings.code,
        generated_at=dt.datetime.now(UTC).replace(microsecond=0),
        version=reconcile.__version__,
        source=source,
        lago=lago,
        customers=tuple(sorted(settings.customers)),
        tolerance=settings.tolerance,
    )
    summed = totals(lines, settings.tolerance)
    notes = negative_cost_notes(summed)
    if summary.too_recent:
        notes.append(
            f"{summary.too_recent:,} missing event(s) above were held back as too recent: "
            "LiteLLM's callback may still deliver them; "
            + ("the next run takes them" if settings.mode == "run" else "backfill again later")
        )
    absent = tuple(sorted(settings.customers - {line.customer for line in lines}))
    notes += [absent_message(absent, settings.charge_by)] if absent else []
    return Report(
        header, lines, summed, [], [], notes, backfilled_by="this run", absent_customers=absent
    )
