"""A part of a run, slice by slice: read and match, hold back the unsettled, send, commit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile import leases, resume, sending
from reconcile.attribute import Tally
from reconcile.build_events import json_lines
from reconcile.forward import EventKey, Frontier, Step, forward_pass
from reconcile.lago.client import LagoClient
from reconcile.ledger import Ledger
from reconcile.money import ZERO, exact_sum
from reconcile.pipeline import Stopwatch
from reconcile.postgres import Database
from reconcile.report.aggregate import REASON_FIELDS, Tallies, add_matches, add_sent, observe_rows
from reconcile.report.lines import sorted_lines
from reconcile.report.sums import Periods, periods
from reconcile.results import Plan, RunSummary
from reconcile.settings import JobSettings
from reconcile.stopping import Stop
from reconcile.transaction_id import PREFIX
from reconcile.window import duration_ms, from_ms, to_ms

log = logging.getLogger(__name__)

SAMPLE = 20  # events a plan keeps to show

Progress = Callable[[Step, RunSummary], None]
"""Told of each step of a run: what it decided, and the run's counts so far."""


def conclude(summary: RunSummary, tallies: Tallies, first_unsettled_ms: int | None) -> None:
    """Counts that follow from the rest: unsent, coverage, lines, unexplained by reason."""
    settings = summary.settings
    summary.unsent = summary.missing - summary.sent - summary.already_in_lago
    summary.covered_until = _covered_until(settings, summary, first_unsettled_ms)
    summary.lines = sorted_lines(tallies.lines(settings.tolerance))
    summary.unexplained = {}
    for reason, field in REASON_FIELDS.items():  # exact, as the report sums them
        count = sum(getattr(line, f"{field}_events") for line in summary.lines)
        if count:
            cost = sum((getattr(line, f"{field}_cost") for line in summary.lines), ZERO)
            summary.unexplained[reason] = (count, cost)


@dataclasses.dataclass
class Passing:
    """A run's pass under way: where it started and what it folds step by step."""

    settings: JobSettings
    summary: RunSummary
    now: dt.datetime
    resumed: resume.Resumed | None
    progress: Progress | None
    requests_before: int
    first_unsettled_ms: int | None = None
    """The earliest "startTime" of a row held back as too recent (Unix ms), if any."""
    phase: str = "reading"
    """What the run is doing: "reading" (and matching), "asking" or "sending"."""
    claim: leases.Claim | None = None
    worker: str = ""
    heartbeat: leases.Heartbeat | None = None
    tallies: Tallies = dataclasses.field(default_factory=Tallies)
    """The part's lines, once its pass is done."""
    sent_near: list[EventKey] = dataclasses.field(default_factory=list)
    """Events this pass has sent that a pass resumed from its frontier would list again beside
    their rows, already decided there: the frontier names them (`Frontier.taken`)."""


def reconcile_part(
    database: Database,
    client: LagoClient,
    ledger: Ledger,
    passing: Passing,
    confirm: Callable[[Plan], bool] | None,
    stop: Stop,
) -> None:
    summary, now, resumed = passing.summary, passing.now, passing.resumed
    clock = Stopwatch(summary.seconds, level=logging.DEBUG)
    start = resumed.frontier if resumed is not None else None
    if confirm is not None and not passing.settings.dry_run:
        _ask(database, client, passing, confirm, stop)
    settings = passing.settings
    label = periods("UTC", "day")
    tallies = _carried(passing)
    added = [Tallies()]  # what the step under way adds to the lines

    def observe(rows: pa.Table) -> None:
        observe_rows(added[0], label)(rows)

    steps = forward_pass(database, client, settings, now=now, start=start, observe=observe)
    number = resumed.next_slice if resumed is not None else 0
    while True:
        with clock("read and match"), stop.interruptible():
            found = next(steps, None)
        if found is None:
            break
        _step(client, ledger, passing, found, added[0], label, clock, stop, settings)
        with stop.deferred(), clock("ledger"):  # a slice is committed whole, or not at all
            if not settings.dry_run and found.frontier is not None:
                summary.lago_requests = client.requests - passing.requests_before
                _commit(ledger, passing, found.frontier, added[0], number)
                number += 1
            if settings.dry_run or found.frontier is not None:
                tallies.merge(added[0])
                added[0] = Tallies()
        if passing.progress is not None:
            passing.progress(found, summary)
        if found.last:  # a signal that comes now finds nothing left to stop
            break
    tallies.merge(added[0])  # a window with nothing to decide
    for stage, seconds in clock.seconds.items():
        log.info("stage %s took %.1f s", stage, seconds)
    if stop.signal is not None:  # after the last batch: nothing left to stop, the run ends
        log.warning("%s came after the last batch: the run is complete", stop.signal.name)
    passing.tallies = tallies
    conclude(summary, tallies, passing.first_unsettled_ms)


def _carried(passing: Passing) -> Tallies:
    """What a resumed run's committed slices added up to: its lines (and plan, held back)."""
    resumed = passing.resumed
    if resumed is None:
        return Tallies()
    count, spend = resumed.state["planned"]
    passing.summary.plan = Plan(count=count, spend=Decimal(spend), by_customer=customer_counts([]))
    passing.first_unsettled_ms = resumed.state["first_unsettled_ms"]
    return resumed.lines


def _ask(
    database: Database,
    client: LagoClient,
    passing: Passing,
    confirm: Callable[[Plan], bool],
    stop: Stop,
) -> None:
    """Ask before anything is sent (a no makes the run a dry run).

    A pass that only plans, then the one that sends: both in bounded memory; only a person at
    a terminal waits for the two.
    """
    settings, summary = passing.settings, passing.summary
    start = passing.resumed.frontier if passing.resumed is not None else None
    planned = RunSummary(run_id=summary.run_id, settings=settings, tally=Tally())
    with stop.interruptible():
        for step in forward_pass(database, client, settings, now=passing.now, start=start):
            _plan(planned, step, settings, passing.now)
    plan = planned.plan
    passing.phase = "asking"
    if plan is not None and plan.count and not sending.confirmed(confirm, plan, stop):
        passing.settings = dataclasses.replace(settings, dry_run=True)
    passing.phase = "reading"


def _commit(
    ledger: Ledger, passing: Passing, frontier: Frontier, added: Tallies, number: int
) -> None:
    """Record a slice as committed: what a resumed run needs to go on from it."""
    summary = passing.summary
    frontier = _with_sent(frontier, passing)
    plan = summary.plan
    state = resume.slice_state(
        frontier,
        summary,
        added,
        first_unsettled_ms=passing.first_unsettled_ms,
        planned=(plan.count, plan.spend) if plan is not None else (0, ZERO),
    )
    assert passing.claim is not None  # noqa: S101 - a part's pass has its claim
    leases.record_slice(
        ledger, passing.claim, passing.worker, number, from_ms(frontier.decided_ms), state
    )


def _with_sent(frontier: Frontier, passing: Passing) -> Frontier:
    """The frontier naming, among the events taken, those this pass sent and may list again.

    An event is sent with its row's endTime as its timestamp: one sent for a row that ended
    less than --skew before the frontier is listed, on resuming, beside a row decided there.
    """
    reach = frontier.decided_ms - duration_ms(passing.settings.margins.skew)
    passing.sent_near = [key for key in passing.sent_near if key[2] >= reach]
    taken = set(frontier.taken)
    fresh = tuple(key for key in passing.sent_near if key not in taken)
    return dataclasses.replace(frontier, taken=(*frontier.taken, *fresh)) if fresh else frontier


def _step(
    client: LagoClient,
    ledger: Ledger,
    passing: Passing,
    step: Step,
    added: Tallies,
    label: Periods,
    clock: Stopwatch,
    stop: Stop,
    settings: JobSettings,
) -> None:
    """One step's outcome: counted, its missing events planned and sent, its lines added."""
    summary = passing.summary
    _count(summary, step)
    with clock("ledger"):
        listed = step.result.events
        ours = listed[listed["transaction_id"].str.startswith(PREFIX).fillna(False)]
        pairs = zip(ours["transaction_id"], ours["subscription"], strict=True)
        ledger.confirm_in_lago(settings.code, pairs)
    rows, to_send, unsettled = _plan(summary, step, settings, passing.now)
    if unsettled is not None:
        known = passing.first_unsettled_ms
        passing.first_unsettled_ms = unsettled if known is None else min(known, unsettled)
    add_matches(
        added, step.expected, step.result, label, backfilled={},
        finalized=lambda _customer, _end: False,
    )  # fmt: skip
    stop.check()
    if to_send and not settings.dry_run:
        if passing.heartbeat is not None:
            passing.heartbeat.check()
        passing.phase = "sending"
        with clock("backfill"):
            report = sending.send(client, ledger, summary, to_send, stop)
        if not stop.requested:  # else it stopped between two batches, whatever comes next
            passing.phase = "reading"
        in_lago = pa.array(
            [name for name, _ in [*report.delivered, *report.already_in_lago]], pa.string()
        )
        held = rows.filter(pc.is_in(rows.column("transaction_id"), value_set=in_lago))
        columns = ["transaction_id", "external_subscription_id", "start_ms", "response_cost"]
        add_sent(added, held.select(columns), summary.run_id or 0, label)
        passing.sent_near += zip(
            held.column("transaction_id").to_pylist(),
            held.column("external_subscription_id").to_pylist(),
            held.column("end_ms").to_pylist(),
            strict=True,
        )


def _count(summary: RunSummary, step: Step) -> None:
    """Fold a step's rows and events into the run's counts."""
    summary.tally += step.expected.tally
    in_window = step.result.rows[step.result.rows["in_window"].to_numpy(dtype=bool)]
    summary.expected += len(in_window)
    summary.listed += len(step.result.events)
    summary.matched_by_id += int((in_window["matched_by"] == "id").sum())
    summary.matched_by_fingerprint += int((in_window["matched_by"] == "fingerprint").sum())


def _plan(
    summary: RunSummary,
    step: Step,
    settings: JobSettings,
    now: dt.datetime,
) -> tuple[pa.Table, list[dict[str, Any]], int | None]:
    """A step's missing rows (as expected events) and those of them to send, into the plan.

    Third: the earliest "startTime" among the rows held back as too recent (Unix ms), if any.
    """
    missing = step.result.missing.sort_values(["end_ms", "request_id"])
    rows = step.expected.events.take(pa.array(missing.index.to_numpy(), pa.int64()))
    settled = _settled(rows, settings, now)
    events = [json.loads(line) for line in json_lines(rows).to_pylist()]
    costs = rows.column("response_cost").to_pylist()
    summary.missing += len(events)
    summary.missing_spend += exact_sum(costs)
    held = [cost for cost, ready in zip(costs, settled, strict=True) if not ready]
    summary.too_recent += len(held)
    summary.too_recent_spend += exact_sum(held)
    unsettled = None
    if not settled.all():
        unsettled = int(rows.column("start_ms").to_numpy()[~settled].min())
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    summary.before_this_month += int((missing["end_ms"] < to_ms(month)).sum())
    to_send = [event for event, ready in zip(events, settled, strict=True) if ready]
    planned = summary.plan or Plan(count=0, spend=ZERO, by_customer=customer_counts([]))
    if settings.max_events is not None:
        to_send = to_send[: max(settings.max_events - planned.count, 0)]
    by_customer = pd.concat([planned.by_customer, customer_counts(to_send)])
    grouped = by_customer.groupby("subscription", sort=True)
    summary.plan = Plan(
        count=planned.count + len(to_send),
        spend=planned.spend + _spend(to_send),
        by_customer=pd.DataFrame(
            {"events": grouped["events"].sum(), "spend": grouped["spend"].sum()}
        ).reset_index(),
        sample=(*planned.sample, *to_send[: max(SAMPLE - len(planned.sample), 0)]),
    )
    return rows, to_send, unsettled


def _settled(rows: pa.Table, settings: JobSettings, now: dt.datetime) -> np.ndarray:
    """Which rows' events have all had time to arrive: endTime + max delay <= now - settle."""
    point = now - settings.settle - settings.margins.max_delay
    end_ms = rows.column("end_ms").to_numpy()
    return end_ms <= to_ms(point)  # type: ignore[no-any-return]


def _covered_until(
    settings: JobSettings, summary: RunSummary, first_unsettled_ms: int | None
) -> dt.datetime | None:
    """For a nightly run that sent every settled row: where its full coverage ends."""
    if settings.mode != "run" or settings.dry_run or settings.customers or summary.left_unsent:
        return None
    return settings.window.until if first_unsettled_ms is None else from_ms(first_unsettled_ms)


def _spend(events: Iterable[Mapping[str, Any]]) -> Decimal:
    return exact_sum(event["properties"]["response_cost"] for event in events)


def customer_counts(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Events and spend per subscription (columns subscription, events, spend)."""
    frame = pd.DataFrame(
        {
            "subscription": [event["external_subscription_id"] for event in events],
            "spend": [Decimal(event["properties"]["response_cost"]) for event in events],
        },
        columns=["subscription", "spend"],
    )
    grouped = frame.groupby("subscription", sort=True)
    counts = pd.DataFrame({"events": grouped.size(), "spend": grouped["spend"].sum()})
    return (
        counts.reset_index()
        if len(frame)
        else pd.DataFrame(columns=["subscription", "events", "spend"])
    )
