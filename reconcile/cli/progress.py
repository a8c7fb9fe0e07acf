"""Progress of a run: a live bar for people at a terminal, one log line per slice for cron."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

from reconcile.forward import Step
from reconcile.job import Progress
from reconcile.results import RunSummary

log = logging.getLogger("reconcile.progress")


@contextlib.contextmanager
def progress(shown: bool | None) -> Iterator[Progress]:
    """A run's progress reporter: a tqdm bar when `shown` (None: when stderr is a terminal).

    The bar counts slices done of the window's, with rows read, events listed and sent, and
    tqdm's ETA; without it, each slice is one INFO line with the same figures.
    """
    if shown is None:
        shown = sys.stderr.isatty()
    started = time.monotonic()
    bars: list[tqdm[Any]] = []  # the one bar, once the first step gives its total
    totals: list[int] = []

    def tell(step: Step, summary: RunSummary) -> None:
        figures = {
            "rows": f"{step.rows_read:,}",
            "listed": f"{step.events_listed:,}",
            "sent": f"{summary.sent:,}",
        }
        if step.last:  # everything left is decided: every slice is done
            for bar in bars:
                bar.update((bar.total or 0) - bar.n)
                bar.set_postfix(figures, refresh=True)
            if not shown and totals:
                log.info(
                    "slice %s of %s: %s rows read, %s events listed, %s sent; done",
                    f"{totals[-1]:,}", f"{totals[-1]:,}", figures["rows"], figures["listed"],
                    figures["sent"],
                )  # fmt: skip
            return
        done = max(step.slices_done, 0)
        totals.append(step.slices_total)
        if shown:
            if not bars:
                bars.append(tqdm(total=step.slices_total, unit="slice", file=sys.stderr))
            bar = bars[0]
            if done < bar.n:  # the next part of a run in parts: its own slices
                bar.reset()
            bar.total = max(step.slices_total, done)
            bar.update(done - bar.n)
            bar.set_postfix(figures, refresh=False)
            return
        if not done:  # the first read, before a slice is whole: a line once one is
            return
        elapsed = time.monotonic() - started
        left = elapsed / done * (step.slices_total - done)
        log.info(
            "slice %s of %s: %s rows read, %s events listed, %s sent, about %.0f s left",
            f"{done:,}", f"{step.slices_total:,}", figures["rows"], figures["listed"],
            figures["sent"], left,
        )  # fmt: skip

    try:
        yield tell
    finally:
        for bar in bars:
            bar.close()
