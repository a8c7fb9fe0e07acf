"""Resume: the run a command left cut short over the same window, and what its slices committed.

After each step a run commits a slice to the ledger (`run_slices`): where its forward pass
stood (reconcile.forward.Frontier), its counts so far and what the slice added to its
per-customer lines. The next invocation of the same command over the same window, with the
same settings, goes on from the last one instead of starting over (`--restart` starts over).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any

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
#: The counts restored on resuming, besides the rows' tally and the money.
COUNTS = ("expected", "listed", "matched_by_id", "matched_by_fingerprint", "missing",
          "too_recent", "sent", "already_in_lago", "lago_requests")  # fmt: skip
MONEY = ("missing_spend", "too_recent_spend", "sent_spend")


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A run to go on with: where it stood after its last committed slice."""

    run_id: int
    next_slice: int
    frontier: Frontier
    state: dict[str, Any]
    """The last slice's state (see `slice_state`)."""
    lines: Tallies
    """Every committed slice's additions to the run's lines, summed."""
    settings: dict[str, Any]
    """The run's recorded settings, noting this resumption."""


def find(
    ledger: Ledger,
    settings: JobSettings,
    *,
    source_id: str,
    recorded: dict[str, Any],
    now: dt.datetime,
) -> Resumed | None:
    """The run to resume for this command and window, if the latest one was cut short."""
    window = settings.window
    latest = ledger.latest_run(
        mode=settings.mode, source_id=source_id, code=settings.code,
        charge_by=settings.charge_by.value, since=window.since, until=window.until,
    )  # fmt: skip
    if latest is None or latest[1] not in RESUMABLE:
        return None
    run_id, status, before = latest
    if _comparable(before) != _comparable(recorded):
        changed = sorted(
            key for key in {*_comparable(before), *_comparable(recorded)}
            if before.get(key) != recorded.get(key)
        )  # fmt: skip
        log.warning(
            "run %s over this window (%s) had other settings (%s): starting over",
            run_id, status, ", ".join(changed),
        )  # fmt: skip
        return None
    states = ledger.slice_states(run_id)
    if not states:
        log.info("run %s over this window (%s) committed no slice: starting over", run_id, status)
        return None
    lines = Tallies()
    for _, state in states:
        lines.merge(Tallies.from_json(state["lines"]))
    number, last = states[-1]
    frontier = last["frontier"]
    resumed = [*before.get("resumed", []), now.isoformat()]
    log.info(
        "resuming run %s (%s) from slice %s: everything before %s is decided",
        run_id, status, number + 1, from_ms(frontier["decided_ms"]).isoformat(),
    )  # fmt: skip
    return Resumed(
        run_id=run_id,
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
        settings={**before, "resumed": resumed},
    )


def restore(summary: RunSummary, resumed: Resumed) -> None:
    """The run's counts as its last committed slice left them."""
    counts = resumed.state["counts"]
    for name in COUNTS:
        setattr(summary, name, counts[name])
    for name in MONEY:
        setattr(summary, name, Decimal(counts[name]))
    summary.before_this_month = resumed.state["before_this_month"]
    rows = counts["rows"]
    summary.tally = Tally(
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
