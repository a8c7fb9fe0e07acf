"""Sending a run's missing events: ledger first, outcomes as they come, stops between batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from reconcile.lago.answers import SendReport, event_name
from reconcile.lago.client import LagoClient
from reconcile.ledger import Ledger
from reconcile.money import exact_sum
from reconcile.results import Plan, RunSummary
from reconcile.stopping import Stop

log = logging.getLogger(__name__)

#: Ledger outcomes are written every this many events (and whenever sending stops).
RECORD_EVERY = 2_000


def confirmed(confirm: Callable[[Plan], bool], plan: Plan, stop: Stop) -> bool:
    """`confirm(plan)`, which a signal ends at once (Interrupted): nothing is sent yet."""
    with stop.interruptible():
        return confirm(plan)


def send(
    client: LagoClient,
    ledger: Ledger,
    summary: RunSummary,
    events: list[dict[str, Any]],
    stop: Stop,
) -> SendReport:
    """Send, with the ledger written first (`sending`) and each outcome recorded as it comes.

    The summary counts what was delivered as it goes: a run that fails halfway records (and
    says) how much it sent before the error. Once `stop` is requested no batch is begun; the
    ones under way are answered, and the events never sent lose their `sending` rows.
    """
    run_id = summary.run_id or 0
    # A run sends step by step: what earlier steps delivered stays counted.
    sent, already, spend = summary.sent, summary.already_in_lago, summary.sent_spend
    ledger.record_sending(run_id, events)  # first: an interruption leaves a trace to confirm
    costs = {event_name(event): event["properties"]["response_cost"] for event in events}
    waiting, done = SendReport(), SendReport()

    def record(part: SendReport) -> None:
        waiting.add(part)
        done.add(part)
        summary.sent, summary.already_in_lago = (
            sent + done.sent,
            already + len(done.already_in_lago),
        )
        if len(waiting.delivered) + len(waiting.already_in_lago) >= RECORD_EVERY:
            _flush(ledger, run_id, waiting)

    fed = 0

    def feed() -> Iterator[dict[str, Any]]:
        # The client takes its batches from here: stopping between two of them is stopping
        # at a batch boundary, with every batch begun answered (or failed) as usual.
        nonlocal fed
        for index, event in enumerate(events):
            if index % client.batch_size == 0 and stop.requested:
                return
            fed = index + 1
            yield event

    try:
        report = client.send_events(feed(), on_batch=record)
    except BaseException:
        summary.sent_spend = spend + exact_sum(costs[name] for name in done.delivered)
        log.warning(
            "%s event(s) were delivered (and %s found already in Lago) before the error; "
            "running again sends the rest",
            f"{summary.sent:,}",
            f"{summary.already_in_lago:,}",
        )
        try:  # what was delivered stays recorded, even on failure...
            _flush(ledger, run_id, waiting)
        except Exception as ledger_error:  # ...but the first error is the one to show
            log.warning("the ledger could not record what was sent: %s", ledger_error)
        raise
    _flush(ledger, run_id, waiting)
    summary.sent = sent + report.sent
    summary.already_in_lago = already + len(report.already_in_lago)
    summary.sent_spend = spend + exact_sum(costs[name] for name in report.delivered)
    if fed < len(events):
        unsent = [event_name(event) for event in events[fed:]]
        ledger.forget_unsent(run_id, unsent)
        stop.check()
    return report


def interrupted(reason: str, summary: RunSummary, phase: str = "reading") -> str:
    """The one line an interrupted run ends with: what it sent, what to do.

    `phase`: what the run was doing, "reading" (and matching), "sending" or "asking".
    """
    name = reason.removeprefix("interrupted by ")  # a signal's name, said either way
    cause = f"interrupted by {name}" if name.startswith("SIG") else f"interrupted ({reason})"
    run = f"run {summary.run_id} is recorded as interrupted"
    done = (
        f"{summary.sent:,} event(s) sent to Lago (${summary.sent_spend:,.2f}), "
        f"{summary.already_in_lago:,} found already there"
    )
    if phase == "sending":
        where = f"between two batches: {done}"
    elif phase == "asking":
        where = f"before sending anything: {done}"
    elif summary.sent + summary.already_in_lago:
        where = f"while reading and matching: {done}"
    else:
        where = "while reading and matching, before anything was sent"
    return (
        f"{cause} {where}; {run}; run the same command again to go on from its last "
        "committed slice, sending the rest exactly once"
    )


def _flush(ledger: Ledger, run_id: int, waiting: SendReport) -> None:
    ledger.record_outcome(run_id, waiting.delivered, waiting.already_in_lago)
    waiting.delivered, waiting.already_in_lago = [], []
