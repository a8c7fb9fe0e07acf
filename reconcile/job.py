"""One run of a window as a worker: enter it, claim its parts in turn, record how it ends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import signal
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

import reconcile
from reconcile import leases, ledger_leases, resume, sending
from reconcile.attribute import Tally
from reconcile.errors import ConfigError, Interrupted
from reconcile.lago.client import LagoClient
from reconcile.ledger import Ledger, lock_key
from reconcile.money import ZERO
from reconcile.postgres import Database
from reconcile.report.aggregate import Tallies
from reconcile.results import Plan, RunSummary, Share
from reconcile.settings import JobSettings
from reconcile.slices import SAMPLE, Passing, Progress, conclude, customer_counts, reconcile_part
from reconcile.stopping import Stop

__all__ = ["Progress", "reconcile_window", "whole_summary"]

log = logging.getLogger(__name__)


def reconcile_window(
    database: Database,
    client: LagoClient,
    ledger: Ledger,
    settings: JobSettings,
    *,
    source: str,
    source_id: str,
    now: dt.datetime,
    confirm: Callable[[Plan], bool] | None = None,
    stop: Stop | None = None,
    progress: Progress | None = None,
    entered: Callable[[int], None] | None = None,
    leaving: Callable[[signal.Signals], None] | None = None,
) -> RunSummary:
    """Reconcile one window end to end as a worker of its run; the ledger records how it ends.

    The run's window is cut into parts (`settings.part`; one by default), each leased to one
    worker at a time (reconcile.leases): this process joins the live run of the same command
    and settings, or resumes the one cut short (unless `settings.restart`), or starts one,
    then claims parts until none is left. A part is reconciled slice by slice
    (reconcile.forward), each slice's missing events sent and the slice committed before the
    next; a part claimed again goes on from its last committed slice. The worker that
    finishes the last part records the run and returns its whole summary; the others return
    theirs (`RunSummary.parts`). `progress` hears of each step; `entered`, of the run's id
    once this worker is in (to start more workers of it: `settings.join`); `leaving`, of the
    signal to pass on to them when this worker leaves its part cut short (SIGTERM for an
    error), before it gives the part up: it is then the last to leave and its reason the run's.

    `source` labels the spend-log database (no password), `source_id` identifies it by what
    its server says it is. Rows whose events may still arrive (endTime + max delay after
    `now - settle`) are held back, never sent. A signal noted by `stop` (or Interrupted from
    `confirm`) ends the run between two batches as `interrupted`, with what it sent recorded,
    and raises Interrupted saying what was sent and what remains. Raises RunLocked when
    another run of the source is under way; ConfigError for a prompt or --max-events over a
    run in several parts.
    """
    stop = stop or Stop()
    parts = len(leases.plan_parts(settings.window, settings.part))
    if parts > 1 and settings.max_events is not None and not settings.dry_run:
        raise ConfigError(
            f"--max-events caps one process's sending, and this window is cut into {parts} "
            "parts that several workers may share: drop --part/--workers, or --max-events"
        )
    worker = leases.worker_name()
    with stop.deferred():  # the ledger's record of the run is never cut short
        recorded = _recorded(settings, client)
        inside = leases.enter(
            ledger, settings, source=source, source_id=source_id, recorded=dict(recorded),
            now=now, worker=worker, lease=settings.lease,
        )  # fmt: skip
    if inside.how == "ended":
        log.info("run %s ended before this worker joined it: nothing left for it", inside.run_id)
        whole = whole_summary(ledger, settings, inside.run_id)
        whole.parts = whole.parts._replace(finished_here=False)  # its end is another's to tell
        return whole
    if entered is not None:
        entered(inside.run_id)
    settings = dataclasses.replace(settings, window=inside.window)
    if inside.parts > 1 and confirm is not None and not settings.dry_run:
        confirm = None  # several parts, several workers: nobody to ask (the CLI says so)
    done_here: list[dict[str, Any]] = []
    claim = inside.claim
    while True:
        if claim is None:
            with stop.deferred():
                claim = leases.claim(ledger, inside.run_id, worker, settings.lease)
        if claim is None:
            try:
                waiting = _wait_for_parts(ledger, inside.run_id, settings, stop)
            except Interrupted:
                raise _left_waiting(inside.run_id, stop, leaving) from None
            if not waiting:
                break
            continue
        if inside.parts > 1:
            log.info(
                "run %s: part %s of %s (%s) is this worker's", inside.run_id, claim.part + 1,
                inside.parts, claim.window,
            )  # fmt: skip
        state = _part(database, client, ledger, settings, claim, worker, now, confirm, stop,
                      progress, leaving)  # fmt: skip
        if state is not None:
            done_here.append(state)
        claim = None
    with stop.deferred(), ledger.transaction():
        ledger.execute(_entry_lock(source_id, settings))  # one worker records the run's end
        standing = leases.parts_state(ledger, inside.run_id)
        last = standing.finished and not leases.finished_already(ledger, inside.run_id)
        whole = _whole(settings, inside.run_id, standing.done if last else done_here)
        whole.parts = Share(len(done_here), standing.total, last)
        if last:
            status = "succeeded" if whole.complete else "incomplete"
            ledger.finish_run(
                inside.run_id, status, whole.counts(), covered_until=whole.covered_until
            )
    return whole


def whole_summary(ledger: Ledger, settings: JobSettings, run_id: int) -> RunSummary:
    """A run's summary from its parts done so far (all of them once it has ended)."""
    standing = leases.parts_state(ledger, run_id)
    whole = _whole(settings, run_id, standing.done)
    whole.parts = Share(0, standing.total, standing.finished)
    return whole


def _entry_lock(source_id: str, settings: JobSettings) -> Any:
    return ledger_leases.lock_for_entry(
        lock_key(source_id, settings.code, settings.charge_by.value)
    )


def _wait_for_parts(ledger: Ledger, run_id: int, settings: JobSettings, stop: Stop) -> bool:
    """With no part to claim: False when every part is done, else True once it is worth trying.

    A worker stays while other workers hold parts: a part whose worker dies is claimed again
    when its lease expires (at once when it was a process of this host that is gone).
    """
    standing = leases.parts_state(ledger, run_id)
    if standing.finished:
        return False
    if standing.working and leases.take_over_local_dead(ledger, run_id):
        return True
    log.info(
        "run %s: %s of %s parts done, %s with other workers: waiting until they are done or "
        "their leases expire", run_id, len(standing.done), standing.total, standing.working,
    )  # fmt: skip
    with stop.interruptible():
        stop.pause(min(settings.lease.total_seconds() / 3, 5.0))
    stop.check()
    return True


def _left_waiting(
    run_id: int, stop: Stop, leaving: Callable[[signal.Signals], None] | None
) -> Interrupted:
    """A worker stopped while it waited, holding no part: what it leaves behind."""
    name = stop.signal.name if stop.signal is not None else "a stop"
    if leaving is None:
        return Interrupted(
            f"interrupted by {name} while waiting for the other workers of run {run_id}, "
            "holding no part: the run goes on with them"
        )
    leaving(stop.signal or signal.SIGTERM)
    return Interrupted(
        f"interrupted by {name} while waiting for the other workers of run {run_id}, holding "
        "no part; the workers this process started were stopped too, and the run goes on with "
        "those it did not start, if any; run the same command again to go on from its last "
        "committed slices"
    )


def _part(
    database: Database,
    client: LagoClient,
    ledger: Ledger,
    settings: JobSettings,
    claim: leases.Claim,
    worker: str,
    now: dt.datetime,
    confirm: Callable[[Plan], bool] | None,
    stop: Stop,
    progress: Progress | None,
    leaving: Callable[[signal.Signals], None] | None,
) -> dict[str, Any] | None:
    """One part, from its last committed slice: what it added up to (None: its lease lost)."""
    run_id = claim.run_id
    part_settings = dataclasses.replace(settings, window=claim.window)
    resumed = None
    if not settings.dry_run:
        resumed = resume.progress(leases.slice_states(ledger, claim))
    summary = RunSummary(run_id=run_id, settings=part_settings, tally=Tally())
    if resumed is not None:
        resume.restore(summary, resumed.state)
    requests_before = client.requests - summary.lago_requests
    passing = Passing(part_settings, summary, now, resumed, progress, requests_before)
    passing.claim, passing.worker = claim, worker
    try:
        with leases.Heartbeat(ledger, claim, worker, settings.lease) as heartbeat:
            passing.heartbeat = heartbeat
            reconcile_part(database, client, ledger, passing, confirm, stop)
    except leases.LeaseLost as lost:
        log.warning("%s", lost)
        return None
    except Interrupted as interruption:
        if leaving is not None:
            leaving(stop.signal or signal.SIGTERM)
        _settle(summary, client, requests_before)
        message = sending.interrupted(str(interruption), summary, passing.phase)
        if not _give_up(ledger, settings, claim, worker, ("interrupted", message), summary):
            recorded = f"run {run_id} is recorded as interrupted"
            goes_on = f"run {run_id} goes on with its other workers (this part is free for them)"
            if settings.join is not None:  # a --workers copy: its parent tells how the run ends
                goes_on = f"this part of run {run_id} is free again; the process that started "
                goes_on += "this worker tells how the run ends"
            message = message.replace(recorded, goes_on)
        raise Interrupted(message) from None
    except BaseException as error:
        if leaving is not None:
            leaving(signal.SIGTERM)
        _settle(summary, client, requests_before)
        failure = ("failed", f"{type(error).__name__}: {error}")
        _give_up(ledger, settings, claim, worker, failure, summary)
        raise
    summary.lago_requests = client.requests - requests_before
    state = _part_state(summary, passing)
    with stop.deferred():
        if not leases.finish_part(ledger, claim, worker, state):
            log.warning("part %s of run %s went to another worker meanwhile", claim.part, run_id)
            return None
    return state


def _settle(summary: RunSummary, client: LagoClient, requests_before: int) -> None:
    summary.lago_requests = client.requests - requests_before
    summary.unsent = summary.missing - summary.sent - summary.already_in_lago


def _give_up(
    ledger: Ledger,
    settings: JobSettings,
    claim: leases.Claim,
    worker: str,
    outcome: tuple[str, str],
    summary: RunSummary,
) -> bool:
    """A part this worker cannot finish: open for the next; the run ends if nobody is on it.

    `outcome`: the run's status then ("interrupted" or "failed") and its error. False when
    other workers go on with the run.
    """
    status, error = outcome
    try:
        with ledger.transaction():
            ledger.execute(ledger_leases.lock_run(claim.run_id))  # workers giving up take turns
            leases.release(ledger, claim, worker)
            standing = leases.parts_state(ledger, claim.run_id)
            if standing.working:
                return False
            whole = _whole(settings, claim.run_id, [*standing.done, _part_state(summary)])
            ledger.finish_run(claim.run_id, status, whole.counts(), error=error)
    except Exception as ledger_error:
        log.warning(
            "the ledger could not record run %s as %s: %s", claim.run_id, status, ledger_error
        )
    return True


def _part_state(summary: RunSummary, passing: Passing | None = None) -> dict[str, Any]:
    """What a part added up to, as run_parts keeps it."""
    plan = summary.plan
    return {
        "counts": summary.counts(),
        "before_this_month": summary.before_this_month,
        "first_unsettled_ms": passing.first_unsettled_ms if passing is not None else None,
        "planned": [plan.count, str(plan.spend)] if plan is not None else [0, "0"],
        "by_customer": [
            [str(subscription), int(events), str(spend)]
            for subscription, events, spend in (
                plan.by_customer[["subscription", "events", "spend"]].itertuples(index=False)
                if plan is not None
                else []
            )
        ],
        "sample": list(plan.sample) if plan is not None else [],
        "lines": (passing.tallies if passing is not None else Tallies()).to_json(),
        "seconds": summary.seconds,
    }


def _whole(settings: JobSettings, run_id: int, states: list[dict[str, Any]]) -> RunSummary:
    """A run's summary from what its parts added up to."""
    summary = RunSummary(run_id=run_id, settings=settings, tally=Tally())
    tallies, unsettled = Tallies(), []
    count, spend = 0, ZERO
    customers: list[list[Any]] = []
    sample: list[dict[str, Any]] = []
    for state in states:
        resume.restore(summary, state)
        tallies.merge(Tallies.from_json(state["lines"]))
        if state["first_unsettled_ms"] is not None:
            unsettled.append(state["first_unsettled_ms"])
        count, spend = count + state["planned"][0], spend + Decimal(state["planned"][1])
        customers += state["by_customer"]
        sample += state["sample"][: max(SAMPLE - len(sample), 0)]
        for stage, seconds in state.get("seconds", {}).items():
            summary.seconds[stage] = summary.seconds.get(stage, 0.0) + seconds
    summary.plan = Plan(
        count=count, spend=spend, by_customer=_summed(customers), sample=tuple(sample)
    )
    conclude(summary, tallies, min(unsettled, default=None))
    return summary


def _summed(customers: list[list[Any]]) -> pd.DataFrame:
    """Parts' [subscription, events, spend] summed per subscription (as Plan.by_customer)."""
    if not customers:
        return customer_counts([])
    frame = pd.DataFrame(customers, columns=["subscription", "events", "spend"])
    frame["spend"] = frame["spend"].map(Decimal)
    grouped = frame.groupby("subscription", sort=True)
    return pd.DataFrame(
        {"events": grouped["events"].sum(), "spend": grouped["spend"].sum()}
    ).reset_index()


def _recorded(settings: JobSettings, client: LagoClient) -> Mapping[str, Any]:
    margins = settings.margins
    return {
        "skew_seconds": margins.skew.total_seconds(),
        "max_delay_seconds": margins.max_delay.total_seconds(),
        "longest_request_seconds": margins.longest.total_seconds(),
        "settle_seconds": settings.settle.total_seconds(),
        "slice_seconds": settings.slice.total_seconds(),
        "part_seconds": settings.part.total_seconds() if settings.part is not None else None,
        "customers": sorted(settings.customers),
        "dry_run": settings.dry_run,
        "max_events": settings.max_events,
        "lago_api_base": client.base_url,
        "reconcile_version": reconcile.__version__,
    }
