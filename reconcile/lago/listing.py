"""Listing Lago's events over a closed window: slices sized by what Lago returns, read ahead."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Protocol

import httpx

from reconcile.errors import LagoError
from reconcile.lago.answers import json_body
from reconcile.lago.events import PageParser, Slice, T
from reconcile.lago.progress import listing_progress
from reconcile.lago.slicing import SliceSizer, TooDense
from reconcile.window import Window, format_instant

log = logging.getLogger(__name__)

#: A slice read: its parsed pages, and how many events they hold.
Read = tuple[list[T], int]


class Pager(Protocol):
    """What a listing needs of Lago's client: its slicing settings and a retried GET."""

    slice: dt.timedelta
    longest_slice: dt.timedelta
    learned_slice: dt.timedelta | None
    per_page: int
    concurrency: int

    def get(self, path: str, params: Mapping[str, str]) -> httpx.Response:
        """The answer to GET `path`, after the client's retries."""


def list_slices(
    client: Pager,
    code: str,
    window: Window,
    parse: PageParser[T],
    *,
    subscription: str | None = None,
) -> Iterator[Slice[T]]:
    """The window's events, slice by slice, each page parsed by `parse`, in time order.

    Slices keep Lago's offset pagination shallow: one hour at first, then sized by what
    Lago returns (`SliceSizer`: longer while sparse, up to `longest_slice_hours`), and
    read `concurrency` at a time, a few ahead. A long slice that turns out dense is split
    and read again before any of it is kept. Each is paged until Lago's own count agrees
    with what was read, and read again if events arrived meanwhile: page through closed
    windows only (one that never stops changing ends in a LagoError). Adjacent slices
    share their edge instant, so an event exactly on it is in both. On a terminal, a long
    listing shows its progress on stderr.
    """
    # A listing starts from the length the last one ended with: a report lists day after day,
    # and a day as sparse as the one before is one request, not a climb from an hour again.
    sizer = SliceSizer(client.slice, client.longest_slice, client.per_page, client.learned_slice)
    cursor = window.since
    workers = max(client.concurrency, 1)
    with (
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        listing_progress(code, window, subscription) as progress,
    ):
        pending: collections.deque[tuple[dt.datetime, dt.datetime, Future[Read[T]]]]
        pending = collections.deque()

        def read_ahead(count: int) -> None:
            nonlocal cursor
            for _ in range(count):
                if cursor > window.until or window.since < cursor == window.until:
                    return  # (a window of one instant is one slice)
                start, end = cursor, min(cursor + sizer.span, window.until)
                split = sizer.split_above(end - start)
                future = pool.submit(
                    _list_slice, client, code, start, end, subscription, parse, split
                )
                pending.append((start, end, future))
                cursor = end if end > start else end + dt.timedelta.resolution

        # A few slices ahead, not all: pages read but not yet consumed cost memory.
        read_ahead(workers + 1)
        try:
            while pending:
                start, end, future = pending.popleft()
                try:
                    pages, read = future.result()
                except TooDense as dense:  # read it again in shorter slices, and what follows
                    for _, _, later in pending:
                        later.cancel()
                    pending.clear()
                    sizer.heard(end - start, dense.total)
                    cursor = start
                    read_ahead(workers + 1)
                    continue
                sizer.heard(end - start, read)
                client.learned_slice = sizer.span
                read_ahead(1)
                progress(end - start, read)
                yield Slice(start, end, pages)
        finally:
            for _, _, future in pending:
                future.cancel()


def _list_slice(
    client: Pager,
    code: str,
    start: dt.datetime,
    end: dt.datetime,
    subscription: str | None,
    parse: PageParser[T],
    split_above: int | None = None,
) -> Read[T]:
    """The slice's parsed pages and how many events they hold; TooDense past `split_above`."""
    params = {
        "code": code,
        "timestamp_from": format_instant(start),
        "timestamp_to": format_instant(end),
        "per_page": str(client.per_page),
    }
    if subscription is not None:
        params["external_subscription_id"] = subscription
    for _ in range(3):
        pages, counts, read = _pages(client, params, parse, split_above)
        if len(set(counts)) == 1 and counts[0] == read:
            return pages, read
        log.warning(
            "events changed in [%s, %s] while they were listed (counts %s): reading again",
            params["timestamp_from"],
            params["timestamp_to"],
            sorted(set(counts)),
        )
    raise LagoError(
        f"events kept arriving in [{params['timestamp_from']}, {params['timestamp_to']}] "
        "while they were listed: list only windows that are closed (older than the "
        "settle delay)"
    )


def _pages(
    client: Pager, params: dict[str, str], parse: PageParser[T], split_above: int | None
) -> tuple[list[T], list[int], int]:
    """One pass over every page: the parsed pages, each page's total_count, events read."""
    pages: list[T] = []
    counts: list[int] = []
    read = 0
    page: int | None = 1
    while page is not None:
        response = client.get("/api/v1/events", params={**params, "page": str(page)})
        if not response.headers.get("content-type", "").startswith("application/json"):
            json_body(response)  # says what came back instead
        parsed, count, meta = parse(response.content)
        counts.append(int(meta.get("total_count", 0)))
        if split_above is not None and counts[0] > split_above:
            raise TooDense(counts[0])
        pages.append(parsed)
        read += count
        page = meta.get("next_page")
    return pages, counts, read
