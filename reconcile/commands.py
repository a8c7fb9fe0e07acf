"""One plain function per CLI command: what tests, notebooks and the CLI all call."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from reconcile.attribute import Tally, billable, classify, tally
from reconcile.build_events import EVENT_SCHEMA, build_events, write_csv, write_jsonl
from reconcile.errors import ConfigError
from reconcile.job import Progress, reconcile_window, whole_summary
from reconcile.lago.answers import hide_password
from reconcile.lago.billing import NEVER_RECOMPUTED, finalized_periods, subscription_ids
from reconcile.lago.client import LagoClient
from reconcile.lago.retry import DEFAULT_BUDGET, RetryPolicy
from reconcile.ledger import DEFAULT_SCHEMA, Ledger
from reconcile.ledger_migrate import (
    Migrated,
    current_revision,
    legacy_revision,
    migration_script,
    pending,
)
from reconcile.ledger_migrate import migrate as ledger_migrate
from reconcile.margins import DEFAULT_SETTLE
from reconcile.money import wide
from reconcile.postgres import Database, server_identity
from reconcile.report.build import ReportSettings, build_report
from reconcile.results import EventsSummary, Plan, Report, RunSummary
from reconcile.settings import DEFAULT_CHUNK_ROWS, ChargeBy, JobSettings
from reconcile.spendlogs.read import open_snapshot, read_window
from reconcile.stopping import Stop
from reconcile.transaction_id import IdBasis
from reconcile.window import Window, format_instant

log = logging.getLogger(__name__)


class EventFormat(enum.StrEnum):
    """How `events` writes its output."""

    JSONL = "jsonl"
    CSV = "csv"


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


@dataclasses.dataclass(frozen=True)
class LagoSettings:
    """Where Lago is (LAGO_API_BASE) and the key it takes (LAGO_API_KEY, never shown).

    `retry_budget`: seconds to keep trying while Lago fails (RECONCILE_LAGO_RETRY_BUDGET).
    """

    base_url: str = dataclasses.field(repr=False)  # may hold a gateway's password
    api_key: str = dataclasses.field(repr=False)
    retry_budget: float = DEFAULT_BUDGET

    @property
    def shown(self) -> str:
        """The base URL as messages show it: its password masked."""
        return hide_password(self.base_url)


@dataclasses.dataclass(frozen=True)
class StateSettings:
    """Where reconcile keeps its ledger: a database and a schema of its own."""

    database: Database
    schema: str = DEFAULT_SCHEMA


def migrate(state: StateSettings) -> Migrated:
    """Create or update reconcile's state schema; what was stamped and applied now."""
    return ledger_migrate(state.database, state.schema)


def migration_sql(schema: str = DEFAULT_SCHEMA, after: str | None = None) -> str:
    """What `migrate` would run on an empty ledger (or one at revision `after`), for a DBA."""
    return migration_script(schema, after)


def pending_migrations(state: StateSettings) -> list[str]:
    """The revisions `migrate` would apply now (oldest first); empty when up to date."""
    return pending(state.database, state.schema)


def ledger_revision(state: StateSettings) -> str | None:
    """The ledger's current revision; None before any `migrate` (or the old runner's ledger)."""
    return current_revision(state.database, state.schema)


def legacy_ledger_revision(state: StateSettings) -> str | None:
    """For a ledger made before Alembic (not stamped yet), the revision it matches; else None."""
    return legacy_revision(state.database, state.schema)


def backfill(
    source: Database,
    lago: LagoSettings,
    state: StateSettings,
    settings: JobSettings,
    *,
    confirm: Callable[[Plan], bool] | None = None,
    client: LagoClient | None = None,
    stop: Stop | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
    entered: Callable[[int], None] | None = None,
    leaving: Callable[[signal.Signals], None] | None = None,
) -> RunSummary:
    """Reconcile the window of `settings`: list, match, send what is missing, record it all.

    A window ending after now - settle is refused (ConfigError): events for its last stretch
    may still arrive. Rows whose events may still arrive are held back (`too_recent`).
    `entered` hears the run's id once this process works on it, `leaving` the signal to pass on
    to other workers it started when it leaves cut short (see reconcile_window).
    """
    now = now or dt.datetime.now(dt.UTC)
    settle_point = now - settings.settle
    if settings.window.until > settle_point:
        raise ConfigError(
            f"--until {format_instant(settings.window.until)} is after now minus --settle "
            f"({format_instant(settle_point)}): LiteLLM's rows and callback events for that "
            f"stretch may still be arriving; give --until {format_instant(settle_point)} or "
            "earlier (or a shorter --settle)"
        )
    with _opened(source, lago, state, client, stop) as (
        source_id,
        lago_client,
        ledger,
    ):
        return reconcile_window(
            source,
            lago_client,
            ledger,
            settings,
            source=str(source),
            source_id=source_id,
            confirm=confirm,
            stop=stop,
            now=now,
            progress=progress,
            entered=entered,
            leaving=leaving,
        )


def report(
    source: Database,
    lago: LagoSettings,
    state: StateSettings,
    settings: ReportSettings,
    *,
    client: LagoClient | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """The reconciliation report of a window: reads the spend logs, Lago and the ledger only."""
    with _client(lago, client) as lago_client, wide():
        return build_report(
            source,
            lago_client,
            settings,
            state=state.database,
            state_schema=state.schema,
            finalized=lambda subscription: finalized_periods(
                lago_client, subscription, statuses=NEVER_RECOMPUTED
            ),
            subscribed=lambda: subscription_ids(lago_client),
            now=now,
        )


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How the nightly run picks its window."""

    lookback: dt.timedelta = dt.timedelta(days=1)
    retention: dt.timedelta = dt.timedelta(days=30)
    first_since: dt.datetime | None = None


def nightly_window(
    covered_until: dt.datetime | None,
    schedule: Schedule,
    now: dt.datetime,
    settle: dt.timedelta = DEFAULT_SETTLE,
) -> Window | None:
    """The nightly window, or None when it is empty; refuses a window past retention.

    It runs from where the last nightly run's full coverage ended, minus the lookback (first
    run: --since, or a day back), to now minus the settle delay. After an outage longer than
    the retention, it resumes at --since if that is within the retention (the operator has
    reconciled the rest with `backfill`).
    """
    until = now - settle
    if covered_until is not None:
        since = covered_until - schedule.lookback
    else:
        since = schedule.first_since or until - dt.timedelta(days=1)
    horizon = now - schedule.retention
    resume = schedule.first_since
    if since < horizon and covered_until is not None and resume is not None and resume >= horizon:
        since = resume
    if since < horizon:
        raise ConfigError(
            f"the window would start at {format_instant(since)}, more than "
            f"{schedule.retention.days} days ago: LiteLLM may have deleted those spend logs "
            "(maximum_spend_logs_retention_period). Reconcile what remains with `reconcile "
            f"backfill --since {format_instant(since)} --until {format_instant(horizon)}`, then "
            f"resume with `reconcile run --since {format_instant(horizon)}` once; or raise "
            "--retention-days if LiteLLM keeps them longer"
        )
    return Window(since, until) if since < until else None


def run(
    source: Database,
    lago: LagoSettings,
    state: StateSettings,
    settings: JobSettings,
    schedule: Schedule,
    *,
    now: dt.datetime,
    client: LagoClient | None = None,
    stop: Stop | None = None,
    progress: Progress | None = None,
    entered: Callable[[int], None] | None = None,
    leaving: Callable[[signal.Signals], None] | None = None,
) -> RunSummary | None:
    """The nightly job: reconcile from where its last full coverage ended (None: nothing yet).

    Only the nightly job's own runs count (not a backfill, a dry run or a --customer run):
    whatever else ran, it never skips a stretch it has not covered in full itself. Before it
    covered anything, it starts at the earliest of `schedule.first_since` and where an earlier
    attempt began (one that failed).
    """
    with _opened(source, lago, state, client, stop) as (
        source_id,
        lago_client,
        ledger,
    ):
        identity = {
            "source_id": source_id,
            "source": str(source),
            "code": settings.code,
            "charge_by": settings.charge_by.value,
        }
        last = ledger.last_coverage(**identity)
        if last is None:  # never covered: from the earliest attempt, if one failed before
            begun = ledger.first_attempt(**identity)
            starts = [start for start in (begun, schedule.first_since) if start is not None]
            schedule = dataclasses.replace(schedule, first_since=min(starts, default=None))
        window = nightly_window(last, schedule, now, settings.settle)
        if window is None:
            return None
        chosen = dataclasses.replace(settings, mode="run", window=window)
        return reconcile_window(
            source,
            lago_client,
            ledger,
            chosen,
            source=str(source),
            source_id=source_id,
            now=now,
            stop=stop,
            progress=progress,
            entered=entered,
            leaving=leaving,
        )


def whole_run(state: StateSettings, settings: JobSettings, run_id: int) -> RunSummary:
    """A run in parts as its ledger has it: the sum of the parts done (see RunSummary.parts)."""
    with Ledger(state.database, state.schema) as ledger:
        return whole_summary(ledger, settings, run_id)


@contextlib.contextmanager
def _opened(
    source: Database,
    lago: LagoSettings,
    state: StateSettings,
    client: LagoClient | None,
    stop: Stop | None = None,
) -> Iterator[tuple[str, LagoClient, Ledger]]:
    """The source's server identity, a Lago client and the ledger.

    The client's waits between tries end on a signal `stop` notes (Interrupted). One run at a
    time per source, code and charge-by: the run's leases see to it (reconcile.leases).
    """
    source_id = server_identity(source)
    with (
        _client(lago, client, stop) as lago_client,
        Ledger(state.database, state.schema) as ledger,
        wide(),
    ):
        yield source_id, lago_client, ledger


@contextlib.contextmanager
def _client(
    lago: LagoSettings, given: LagoClient | None, stop: Stop | None = None
) -> Iterator[LagoClient]:
    if given is not None:
        yield given
        return
    retry = RetryPolicy(total_seconds=lago.retry_budget)
    sleep = stop.pause if stop is not None else time.sleep
    with LagoClient(lago.base_url, lago.api_key, retry=retry, sleep=sleep) as client:
        yield client
