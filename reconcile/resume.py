"""Resume: the run a command left cut short over the same window, and what its slices committed.

After each step a run commits a slice of the part it works on to the ledger (`run_slices`):
where its forward pass stood (reconcile.forward.Frontier), the part's counts so far and what
the slice added to its per-customer lines. The next invocation of the same command over the
same window, with the same settings, goes on from there instead of starting over
(`--restart` starts over); any worker that claims the part later does the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from reconcile import ledger_leases as statements
from reconcile.attribute import CLASS_ORDER, ClassTotal, Tally
from reconcile.forward import Frontier
from reconcile.ledger import Ledger
from reconcile.report.aggregate import Tallies
from reconcile.results import RunSummary
from reconcile.settings import JobSettings
from reconcile.window import from_ms

log = logging.getLogger(__name__)

#: A run in one of these, with slices committed, is resumed by the same command.
RESUMABLE = ("running", "interrupted", "failed")
#: Recorded settings that may differ between a run and its resumption.
VOLATILE = ("reconcile_version", "resumed")
#: The option (or setting) each recorded setting comes from, as messages name it.
OPTIONS = {
    "skew_seconds": "--skew", "max_delay_seconds": "--max-delay",
    "longest_request_seconds": "--longest-request", "settle_seconds": "--settle",
    "slice_seconds": "--slice", "part_seconds": "--part", "customers": "--customer",
    "dry_run": "--dry-run", "max_events": "--max-events", "lago_api_base": "--lago-api-base",
}  # fmt: skip
#: The counts restored on resuming, besides the rows' tally and the money.
COUNTS = ("expected", "listed", "matched_by_id", "matched_by_fingerprint", "missing",
          "too_recent", "sent", "already_in_lago", "lago_requests")  # fmt: skip
MONEY = ("missing_spend", "too_recent_spend", "sent_spend")


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A part of a run to go on with: where it stood after its last committed slice."""

    next_slice: int
    frontier: Frontier
    state: dict[str, Any]
    """The last slice's state (see `slice_state`)."""
    lines: Tallies
    """Every committed slice's additions to the part's lines, summed."""


def find_run(
    ledger: Ledger,
    settings: JobSettings,
    *,
    source_id: str,
    recorded: dict[str, Any],
) -> tuple[int, str, dict[str, Any]] | None:
    """The run to resume for this command and window, if the latest one was cut short.

    Its id, status and recorded settings; None to start over (none, finished, a dry run, or
    other settings, which it says).
    """
    window = settings.window
    latest = ledger.latest_run(
        mode=settings.mode, source_id=source_id, code=settings.code,
        charge_by=settings.charge_by.value, since=window.since, until=window.until,
    )  # fmt: skip
    if latest is None or latest[1] not in RESUMABLE:
        return None
    run_id, status, before = latest
    changed = differences(before, recorded)
    if changed:
        log.warning(
            "run %s over this window (%s) had other settings (%s): starting over",
            run_id, status, ", ".join(changed),
        )  # fmt: skip
        return None
    if not ledger.execute(statements.committed_anything(run_id)).scalar():
        log.info("run %s over this window (%s) committed no slice: starting over", run_id, status)
        return None
    return latest


def differences(before: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """The options whose recorded settings differ between two runs (what may differ left out)."""
    old, new = _comparable(before), _comparable(recorded)
    return sorted(OPTIONS.get(key, key) for key in {*old, *new} if old.get(key) != new.get(key))


def noted(before: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A run's recorded settings, noting that it was resumed now."""
    return {**before, "resumed": [*before.get("resumed", []), now.isoformat()]}


def progress(ledger_slices: list[tuple[int, dict[str, Any]]]) -> Resumed | None:
    """Where a part stands after its committed slices (by number, in order); None: none."""
    if not ledger_slices:
        return None
    lines = Tallies()
    for _, state in ledger_slices:
        lines.merge(Tallies.from_json(state["lines"]))
    number, last = ledger_slices[-1]
    frontier = last["frontier"]
    log.info(  # the time, not the commit's number: commits count margins read again too
        "going on from %s: everything before it is decided",
        from_ms(frontier["decided_ms"]).isoformat(),
    )
    return Resumed(
        next_slice=number + 1,
        frontier=Frontier(
            decided_ms=frontier["decided_ms"],
            tallied_ms=frontier["tallied_ms"],
            last_end_ms=frontier["last_end_ms"],
            taken=tuple(
                (name, subscription, time) for name, subscription, time in frontier["taken"]
            ),
        ),
        state=last,
        lines=lines,
    )


def restore(summary: RunSummary, state: dict[str, Any]) -> None:
    """Add the counts a committed slice (or a finished part) recorded to a summary's."""
    counts = state["counts"]
    for name in COUNTS:
        setattr(summary, name, getattr(summary, name) + counts[name])
    for name in MONEY:
        setattr(summary, name, getattr(summary, name) + Decimal(counts[name]))
    summary.before_this_month += state["before_this_month"]
    rows = counts["rows"]
    summary.tally += Tally(
        {
            member: ClassTotal(
                rows[member.value]["rows"],
                Decimal(rows[member.value]["spend"]),
                rows[member.value].get("rows_with_spend", 0),
            )
            for member in CLASS_ORDER
        }
    )


def slice_state(
    frontier: Frontier,
    summary: RunSummary,
    lines: Tallies,
    *,
    first_unsettled_ms: int | None,
    planned: tuple[int, Decimal],
) -> dict[str, Any]:
    """What a committed slice records: the pass's frontier, the counts, the lines it added."""
    return {
        "frontier": {
            "decided_ms": frontier.decided_ms,
            "tallied_ms": frontier.tallied_ms,
            "last_end_ms": frontier.last_end_ms,
            "taken": [list(key) for key in frontier.taken],
        },
        "counts": summary.counts(),
        "before_this_month": summary.before_this_month,
        "first_unsettled_ms": first_unsettled_ms,
        "planned": [planned[0], str(planned[1])],
        "lines": lines.to_json(),
    }


def _comparable(recorded: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in recorded.items() if key not in VOLATILE}
