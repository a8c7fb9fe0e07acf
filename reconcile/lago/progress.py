"""A progress bar for long Lago listings, on stderr when it is a terminal (never in cron logs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator

from tqdm import tqdm

from reconcile.window import Window

#: Seconds a listing runs before its bar appears: short ones print nothing.
SHOW_AFTER = 2.0

#: Told each slice read: its length and how many events it held.
Progress = Callable[[dt.timedelta, int], None]


@contextlib.contextmanager
def listing_progress(code: str, window: Window, subscription: str | None) -> Iterator[Progress]:
    """A callback that advances a bar over the window's days; the bar is gone when it ends."""
    days = (window.until - window.since).total_seconds() / 86_400
    what = f"Lago {code}" + (f" of {subscription}" if subscription else "")
    with tqdm(
        total=round(days, 3),
        desc=f"listing {what}",
        unit="day",
        file=sys.stderr,
        disable=None if sys.stderr.isatty() else True,
        delay=SHOW_AFTER,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}% |{bar}| {n:.1f}/{total:.1f} days "
        "[{elapsed}<{remaining}{postfix}]",
    ) as bar:
        events = 0

        def advance(length: dt.timedelta, read: int) -> None:
            nonlocal events
            events += read
            bar.set_postfix_str(f"{events:,} events read", refresh=False)
            bar.update(length.total_seconds() / 86_400)

        yield advance
