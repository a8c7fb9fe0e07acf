"""One reconciliation of a window: expected events, Lago's events, match, backfill, ledger."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import reconcile
from reconcile.attribute import Tally
from reconcile.build_events import json_lines
from reconcile.expected import Expected, read_expected
from reconcile.lago.answers import SendReport
from reconcile.lago.client import LagoClient
from reconcile.lago.events import arrow_page, frame
from reconcile.ledger import Ledger
from reconcile.match import MatchResult, MatchSettings, match
from reconcile.postgres import Database
from reconcile.report.aggregate import (
    REASON_FIELDS,
    Tallies,
    add_matches,
    add_sent,
    observe_rows,
    periods,
    sorted_lines,
)
from reconcile.report.model import Line
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import DEFAULT_CHUNK_ROWS
from reconcile.transaction_id import PREFIX
from reconcile.window import Window

log = logging.getLogger(__name__)

DEFAULT_SKEW = dt.timedelta(minutes=2)
DEFAULT_MAX_DELAY = dt.timedelta(minutes=20)


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """What to reconcile and how far event times may stray from the rows' (see README)."""

    mode: str  # "run" or "backfill"
    window: Window
    charge_by: ChargeBy
    code: str
    skew: dt.timedelta = DEFAULT_SKEW
    max_delay: dt.timedelta = DEFAULT_MAX_DELAY
    customers: frozenset[str] = frozenset()
    dry_run: bool = False
    max_events: int | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    tolerance: Decimal = Decimal("0.01")

    @property
    def margin(self) -> dt.timedelta:
        """How far beyond the window rows and events are read, so its edges are judged right."""
        return self.skew + self.max_delay


@dataclasses.dataclass(frozen=True)
class Plan:
    """The backfill about to happen: for a confirmation prompt and the dry-run listing."""

    events: list[dict[str, Any]]
    spend: Decimal
    by_customer: pd.DataFrame  # subscription, events, spend


@dataclasses.dataclass
class RunSummary:
    """What a run found and did; `counts` is what the ledger keeps."""

    run_id: int | None
    settings: JobSettings
    tally: Tally
    expected: int = 0
    listed: int = 0
    matched_by_id: int = 0
    matched_by_fingerprint: int = 0
    missing: int = 0
    missing_spend: Decimal = Decimal(0)
    sent: int = 0
    already_in_lago: int = 0
    unsent: int = 0
    before_this_month: int = 0
    unexplained: dict[str, tuple[int, Decimal]] = dataclasses.field(default_factory=dict)
    lago_requests: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    plan: Plan | None = None
    lines: list[Line] = dataclasses.field(default_factory=list)
    """Per customer and UTC day, as `reconcile report` shows them, after this run's sending."""

    def counts(self) -> dict[str, Any]:
        """The summary as the ledger's `counts` JSON."""
        return {
            "rows": {
                member.value: {"rows": total.rows, "spend": str(total.spend)}
                for member, total in self.tally.by_class.items()
            },
            "expected": self.expected,
            "listed": self.listed,
            "matched_by_id": self.matched_by_id,
            "matched_by_fingerprint": self.matched_by_fingerprint,
            "missing": self.missing,
            "missing_spend": str(self.missing_spend),
            "sent": self.sent,
            "already_in_lago": self.already_in_lago,
            "unsent": self.unsent,
            "unexplained": {
                reason: {"events": count, "cost": str(cost)}
                for reason, (count, cost) in self.unexplained.items()
            },
            "lago_requests": self.lago_requests,
            "seconds": self.seconds,
        }


def reconcile_window(
    database: Database,
    client: LagoClient,
    ledger: Ledger,
    settings: JobSettings,
    *,
    source: str,
    confirm: Callable[[Plan], bool] = lambda _: True,
    now: dt.datetime | None = None,
) -> RunSummary:
    """Reconcile one window end to end; the ledger records the run however it ends."""
    run_id = ledger.start_run(
        mode=settings.mode,
        source=source,
        code=settings.code,
        charge_by=settings.charge_by.value,
        since=settings.window.since,
        until=settings.window.until,
        settings=_recorded(settings, client),
    )
    summary = RunSummary(run_id=run_id, settings=settings, tally=Tally())
    requests_before = client.requests
    try:
        _reconcile(
            database, client, ledger, settings, summary, confirm, now or dt.datetime.now(dt.UTC)
        )
    except BaseException as error:
        summary.lago_requests = client.requests - requests_before
        ledger.finish_run(
            run_id, "failed", summary.counts(), error=f"{type(error).__name__}: {error}"
        )
        raise
    summary.lago_requests = client.requests - requests_before
    ledger.finish_run(run_id, "incomplete" if summary.unsent else "succeeded", summary.counts())
    return summary


def _reconcile(
    database: Database,
    client: LagoClient,
    ledger: Ledger,
    settings: JobSettings,
    summary: RunSummary,
    confirm: Callable[[Plan], bool],
    now: dt.datetime,
) -> None:
    clock = _Stopwatch(summary.seconds)
    tallies, label = Tallies(), periods("UTC", "day")
    expected, result = read_and_match(
        database, client, settings, clock=clock, observe=observe_rows(tallies, label)
    )
    summary.tally, summary.expected = expected.tally, int(expected.in_window.sum())
    summary.listed = len(result.events)
    _count_matches(summary, result)
    with clock("ledger"):
        listed = result.events
        ours = listed[listed["transaction_id"].str.startswith(PREFIX).fillna(False)]
        ledger.confirm_in_lago(zip(ours["transaction_id"], ours["subscription"], strict=True))
    missing = result.missing.sort_values(["end_ms", "request_id"])
    to_send = [
        json.loads(line)
        for line in json_lines(expected.events.take(missing.index.to_numpy())).to_pylist()
    ]
    summary.missing, summary.missing_spend = len(to_send), _spend(to_send)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    summary.before_this_month = int((missing["end_ms"] < month.timestamp() * 1000).sum())
    if settings.max_events is not None:
        to_send = to_send[: settings.max_events]
    summary.plan = Plan(events=to_send, spend=_spend(to_send), by_customer=_by_customer(to_send))
    add_matches(
        tallies,
        expected,
        result,
        label,
        backfilled={},
        finalized=lambda _customer, _end_ms: False,
    )
    if to_send and not settings.dry_run and confirm(summary.plan):
        with clock("backfill"):
            report = _send(client, ledger, summary.run_id or 0, to_send)
        summary.sent, summary.already_in_lago = report.sent, len(report.already_in_lago)
        in_lago = pa.array(
            [name for name, _ in [*report.delivered, *report.already_in_lago]], pa.string()
        )
        rows = expected.events.select(
            ["transaction_id", "external_subscription_id", "start_ms", "response_cost"]
        ).take(pa.array(missing.index.to_numpy(), pa.int64()))
        add_sent(
            tallies,
            rows.filter(pc.is_in(rows.column("transaction_id"), value_set=in_lago)),
            summary.run_id or 0,
            label,
        )
    summary.unsent = summary.missing - summary.sent - summary.already_in_lago
    summary.lines = sorted_lines(tallies.lines(settings.tolerance))
    for reason, field in REASON_FIELDS.items():  # exact, as the report sums them
        count = sum(getattr(line, f"{field}_events") for line in summary.lines)
        if count:
            cost = sum((getattr(line, f"{field}_cost") for line in summary.lines), Decimal(0))
            summary.unexplained[reason] = (count, cost)


def read_and_match(
    database: Database,
    client: LagoClient,
    settings: JobSettings,
    *,
    clock: _Stopwatch | None = None,
    observe: Callable[[pa.Table], None] | None = None,
) -> tuple[Expected, MatchResult]:
    """The window's expected events and Lago's, matched; reads only, sends nothing.

    `observe` sees every classified row of the window itself (all classes, margins left out).
    """
    clock = clock or _Stopwatch({})
    with clock("read spend logs"):
        expected = read_expected(
            database,
            window=settings.window,
            margin=settings.margin,
            charge_by=settings.charge_by,
            code=settings.code,
            customers=settings.customers,
            chunk_rows=settings.chunk_rows,
            observe=observe,
        )
    with clock("list Lago events"):
        events = _lago_events(client, settings)
    with clock("match"):
        result = match(_rows_frame(expected), events, _match_settings(settings))
    return expected, result


def _lago_events(client: LagoClient, settings: JobSettings) -> pd.DataFrame:
    listed = Window(
        settings.window.since - settings.skew, settings.window.until + settings.max_delay
    )
    if not settings.customers:
        return frame(client.list_slices(settings.code, listed, arrow_page))
    frames = [
        frame(client.list_slices(settings.code, listed, arrow_page, subscription=customer))
        for customer in sorted(settings.customers)
    ]
    return pd.concat(frames, ignore_index=True)


def _rows_frame(expected: Expected) -> pd.DataFrame:
    columns = [
        "transaction_id",
        "litellm_request_id",
        "external_subscription_id",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "end_ms",
        "in_window",
    ]
    table = expected.events.select(columns)
    for name in ("external_subscription_id", "model"):  # few values: categories, not strings
        position = table.column_names.index(name)
        table = table.set_column(position, name, pc.dictionary_encode(table.column(name)))
    frame: pd.DataFrame = table.to_pandas(types_mapper=_arrow_strings)
    renamed = {"litellm_request_id": "request_id", "external_subscription_id": "subscription"}
    return frame.rename(columns=renamed)


def _arrow_strings(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """Strings stay in Arrow's buffers: a million ids are not copied into pandas' own."""
    return pd.ArrowDtype(arrow_type) if arrow_type == pa.string() else None


def _match_settings(settings: JobSettings) -> MatchSettings:
    return MatchSettings(
        since_ms=int(settings.window.since.timestamp() * 1000),
        until_ms=int(settings.window.until.timestamp() * 1000),
        skew_ms=int(settings.skew.total_seconds() * 1000),
        max_delay_ms=int(settings.max_delay.total_seconds() * 1000),
    )


def _count_matches(summary: RunSummary, result: MatchResult) -> None:
    rows = result.rows[result.rows["in_window"]]
    summary.matched_by_id = int((rows["matched_by"] == "id").sum())
    summary.matched_by_fingerprint = int((rows["matched_by"] == "fingerprint").sum())


def _send(
    client: LagoClient, ledger: Ledger, run_id: int, events: list[dict[str, Any]]
) -> SendReport:
    ledger.record_sending(run_id, events)  # first: an interruption leaves a trace to confirm
    report = client.send_events(events)
    ledger.record_outcome(run_id, report.delivered, report.already_in_lago)
    return report


def _spend(events: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(event["properties"]["response_cost"]) for event in events), Decimal(0))


def _by_customer(events: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "subscription": [event["external_subscription_id"] for event in events],
            "spend": [Decimal(event["properties"]["response_cost"]) for event in events],
        },
        columns=["subscription", "spend"],
    )
    grouped = frame.groupby("subscription", sort=True)
    return pd.DataFrame({"events": grouped.size(), "spend": grouped["spend"].sum()}).reset_index()


def _recorded(settings: JobSettings, client: LagoClient) -> Mapping[str, Any]:
    return {
        "skew_seconds": settings.skew.total_seconds(),
        "max_delay_seconds": settings.max_delay.total_seconds(),
        "customers": sorted(settings.customers),
        "dry_run": settings.dry_run,
        "max_events": settings.max_events,
        "lago_api_base": client.base_url,
        "reconcile_version": reconcile.__version__,
    }


class _Stopwatch:
    """Seconds per stage, into a dict, with one log line each."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 3)
            log.info("%s: %.1f s", stage, self.seconds[stage])
