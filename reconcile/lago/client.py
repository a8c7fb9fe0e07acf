"""The Lago HTTP edge: list events over closed windows, send events in batches, exactly once.

Exactly once rests on stable transaction ids: Lago (Postgres store) refuses a second event
with the same subscription and id (422 `value_already_exist`), and its ClickHouse store
bills copies with the same id and timestamp once. So any batch may be sent again after a
timeout or a dropped connection, and an already-stored event counts as delivered.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import httpx

from reconcile.errors import ConfigError, LagoUnavailable
from reconcile.lago.answers import (
    ALREADY_STORED,
    SendReport,
    configuration_problem,
    event_name,
    hide_password,
    json_body,
    normalize_base_url,
    raise_for_status,
    rejection,
)
from reconcile.lago.events import PageParser, Slice, T
from reconcile.lago.listing import list_slices
from reconcile.lago.retry import RETRYABLE_STATUSES, Outage, RetryPolicy
from reconcile.lago.slicing import LONGEST
from reconcile.window import Window

log = logging.getLogger(__name__)

MAX_BATCH = 100  # Lago refuses bigger batches: 422 too_many_events
DEFAULT_PER_PAGE = 2_000  # a day of a million events in about 500 pages
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)


class LagoClient:
    """Lago's events API over one pooled, TLS-verifying HTTP client. Use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        per_page: int = DEFAULT_PER_PAGE,
        concurrency: int = DEFAULT_CONCURRENCY,
        batch_size: int = MAX_BATCH,
        slice_hours: float = 1.0,
        longest_slice_hours: float = LONGEST.total_seconds() / 3600,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"the batch size must be 1 to {MAX_BATCH}, got {batch_size}")
        url = normalize_base_url(base_url)
        #: Where Lago is, as every message, log and ledger row shows it (password masked).
        self.base_url = hide_password(url)
        self.per_page = per_page
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.slice = dt.timedelta(hours=slice_hours)
        self.longest_slice = dt.timedelta(hours=longest_slice_hours)
        self.learned_slice: dt.timedelta | None = None  # where the next listing's slices start
        self.retry = retry or RetryPolicy()
        self._outage = Outage(self.retry.total_seconds, clock)
        self._sleep = sleep
        self._clock = clock
        self._counter = itertools.count(1)
        self.requests = 0  # every request made, for reports and benchmarks
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self._rng_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "reconcile"},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 1),
        )

    def __repr__(self) -> str:
        return f"LagoClient({self.base_url!r})"

    def __enter__(self) -> LagoClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def list_slices(
        self,
        code: str,
        window: Window,
        parse: PageParser[T],
        *,
        subscription: str | None = None,
    ) -> Iterator[Slice[T]]:
        """The window's events, slice by slice, each page parsed by `parse`, in time order.

        Slices sized by what Lago returns, read a few ahead; see `reconcile.lago.listing`.
        """
        return list_slices(self, code, window, parse, subscription=subscription)

    def send_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        on_batch: Callable[[SendReport], None] | None = None,
    ) -> SendReport:
        """Deliver every event: batches of at most 100, `concurrency` requests in flight.

        Events Lago already holds count as delivered. `on_batch` hears each batch's outcome as
        it comes, also those still under way when another failed: an audit trail can record
        what was delivered before the error propagates. Any other refusal stops the run with
        every transaction id and Lago's reason; batches already sent stay sent, and running
        again sends the rest.
        """
        report = SendReport()

        def settle(future: Future[SendReport]) -> None:
            part = future.result()
            report.add(part)
            if on_batch is not None:
                on_batch(part)

        batches = _batched(events, self.batch_size)
        with concurrent.futures.ThreadPoolExecutor(max(self.concurrency, 1)) as pool:
            pending: set[Future[SendReport]] = set()
            try:
                for batch in batches:
                    pending.add(pool.submit(self._send_batch, batch))
                    if len(pending) >= 2 * self.concurrency:
                        settle(_first_done(pending))
                while pending:
                    settle(_first_done(pending))
            except BaseException:
                for future in pending:
                    future.cancel()
                under_way = [future for future in pending if not future.cancelled()]
                for future in concurrent.futures.as_completed(under_way):
                    if future.exception() is None:
                        settle(future)
                raise
        return report

    def _send_batch(self, batch: list[Mapping[str, Any]]) -> SendReport:
        report = SendReport()
        remaining = batch
        tried: set[Any] = set()  # ids sent before in this batch and not refused then
        while remaining:
            response = self._request(
                "POST", "/api/v1/events/batch", json={"events": remaining}, report=report
            )
            if response.status_code < 300:
                report.delivered += [event_name(event) for event in remaining]
                return report
            details = json_body(response).get("error_details", {})
            stored = {int(index) for index, error in details.items() if error == ALREADY_STORED}
            refused = {index: error for index, error in details.items() if error != ALREADY_STORED}
            if response.status_code != 422 or refused or not stored:
                raise rejection(response, remaining, refused or details)
            # Since v1.39 nothing of a refused batch is stored; before, its other events were,
            # and they come back as duplicates on the next try: delivered by us all the same.
            ids = [event.get("transaction_id") for event in remaining]
            for index in sorted(stored):
                outcome = report.delivered if ids[index] in tried else report.already_in_lago
                outcome.append(event_name(remaining[index]))
            tried.update(ids)
            remaining = [event for index, event in enumerate(remaining) if index not in stored]
        return report

    def health(self) -> Mapping[str, Any]:
        """Lago's /health answer (its version), or an error saying why it is unreachable."""
        return json_body(self._request("GET", "/health"))

    def get(
        self,
        path: str,
        params: Mapping[str, str | Sequence[str]] | None = None,
        *,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """GET `path` with every request's retries and errors; `accept`ed statuses are returned.

        For readers of other Lago resources (`reconcile.lago.billing`); a list value repeats
        its parameter (`statuses[]=a&statuses[]=b`).
        """
        return self._request("GET", path, params=params, accept=accept)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        json: Any = None,
        report: SendReport | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """One request, tried again on 429, 5xx and connection trouble within the budget.

        The budget (`retry.total_seconds`) is the client's, per outage: concurrent requests
        share it, and give up together. Other failures raise errors that say what to fix, but
        for statuses in `accept`.
        """
        for attempt in itertools.count(1):
            self.requests = next(self._counter)  # count() is atomic: safe from worker threads
            if report is not None:
                report.requests += 1
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TransportError as error:  # refused, reset, dropped, timed out
                if (problem := configuration_problem(error, self.base_url)) is not None:
                    raise problem from None
                failure, headers = f"{type(error).__name__}: {error}", {}
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    self._outage.ended()
                    if response.status_code not in accept:
                        raise_for_status(response, self.base_url)
                    return response
                failure, headers = f"HTTP {response.status_code}", dict(response.headers)
            elapsed, left = self._outage.failed()
            if left <= 0:
                raise LagoUnavailable(
                    f"Lago at {self.base_url} kept failing {method} {path} ({failure}) for "
                    f"{elapsed:.0f} s and {self._outage.tries} tries: check that it is up; running "
                    "again later is safe (--lago-retry-budget sets how long to keep trying)"
                )
            with self._rng_lock:
                wait = min(self.retry.delay(attempt, headers, rng=self._rng), left)
            log.info("Lago %s %s: %s; trying again in %.1f s", method, path, failure, wait)
            if report is not None:
                report.retries += 1
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _batched(events: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(events)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _first_done(pending: set[Future[SendReport]]) -> Future[SendReport]:
    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
    future = done.pop()
    pending.discard(future)
    return future
