"""The Lago HTTP edge: list events over closed windows, send events in batches, exactly once.

Exactly once rests on stable transaction ids: Lago (Postgres store) refuses a second event
with the same subscription and id (422 `value_already_exist`), and its ClickHouse store
bills copies with the same id and timestamp once. So any batch may be sent again after a
timeout or a dropped connection, and an already-stored event counts as delivered.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import itertools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from reconcile.errors import ConfigError, LagoError, LagoRejected, LagoUnavailable
from reconcile.lago.events import LagoEvent, parse_event
from reconcile.lago.retry import RETRYABLE_STATUSES, RetryPolicy
from reconcile.window import Window, format_instant

log = logging.getLogger(__name__)

MAX_BATCH = 100  # Lago refuses bigger batches: 422 too_many_events
DEFAULT_PER_PAGE = 2_000  # a day of a million events in about 500 pages
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
ALREADY_STORED = {"transaction_id": ["value_already_exist"]}


@dataclasses.dataclass
class SendReport:
    """What one `send_events` call did."""

    sent: int = 0
    already_in_lago: int = 0
    requests: int = 0
    retries: int = 0

    def add(self, other: SendReport) -> None:
        """Fold another report into this one."""
        self.sent += other.sent
        self.already_in_lago += other.already_in_lago
        self.requests += other.requests
        self.retries += other.retries


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
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"the batch size must be 1 to {MAX_BATCH}, got {batch_size}")
        self.base_url = normalize_base_url(base_url)
        self.per_page = per_page
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.slice = dt.timedelta(hours=slice_hours)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self._rng_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.base_url,
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

    def list_events(
        self, code: str, window: Window, *, subscription: str | None = None
    ) -> Iterator[LagoEvent]:
        """Every event of `code` with a timestamp in [since, until] (both included).

        The window is read in slices (one hour by default) so Lago's offset pagination stays
        shallow; each slice is paged until Lago's own count agrees with what was read, and
        read again if events arrived meanwhile. Page through closed windows only: a window
        that never stops changing ends in a LagoError.
        """
        start = window.since
        previous_edge: set[tuple[str, str | None, str | None]] = set()
        while start <= window.until:
            end = min(start + self.slice, window.until)
            events = self._list_slice(code, start, end, subscription)
            for event in events:
                if event.timestamp == start and event.identity in previous_edge:
                    continue  # the slices share their edge instant: seen in the last one
                yield event
            previous_edge = {event.identity for event in events if event.timestamp == end}
            if end == window.until:
                break
            start = end

    def _list_slice(
        self, code: str, start: dt.datetime, end: dt.datetime, subscription: str | None
    ) -> list[LagoEvent]:
        params = {
            "code": code,
            "timestamp_from": format_instant(start),
            "timestamp_to": format_instant(end),
            "per_page": str(self.per_page),
        }
        if subscription is not None:
            params["external_subscription_id"] = subscription
        for _ in range(3):
            events, counts = self._pages(params)
            if len(set(counts)) == 1 and counts[0] == len(events):
                return events
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

    def _pages(self, params: dict[str, str]) -> tuple[list[LagoEvent], list[int]]:
        """One pass over every page: the events, and the total_count each page reported."""
        events: list[LagoEvent] = []
        counts: list[int] = []
        page: int | None = 1
        while page is not None:
            response = self._request("GET", "/api/v1/events", params={**params, "page": str(page)})
            body = _json(response)
            events.extend(parse_event(item) for item in body.get("events", []))
            meta = body.get("meta", {})
            counts.append(int(meta.get("total_count", 0)))
            page = meta.get("next_page")
        return events, counts

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> SendReport:
        """Deliver every event: batches of at most 100, `concurrency` requests in flight.

        Events Lago already holds count as delivered. Any other refusal stops the run with
        every transaction id and Lago's reason; batches already sent stay sent, and running
        again sends the rest.
        """
        report = SendReport()
        batches = _batched(events, self.batch_size)
        with concurrent.futures.ThreadPoolExecutor(max(self.concurrency, 1)) as pool:
            pending: set[concurrent.futures.Future[SendReport]] = set()
            try:
                for batch in batches:
                    pending.add(pool.submit(self._send_batch, batch))
                    if len(pending) >= 2 * self.concurrency:
                        report.add(_first_done(pending))
                while pending:
                    report.add(_first_done(pending))
            except BaseException:
                for future in pending:
                    future.cancel()
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
                report.sent += len(remaining)
                return report
            details = _json(response).get("error_details", {})
            stored = {int(index) for index, error in details.items() if error == ALREADY_STORED}
            refused = {index: error for index, error in details.items() if error != ALREADY_STORED}
            if response.status_code != 422 or refused or not stored:
                raise _rejection(response, remaining, refused or details)
            # Since v1.39 nothing of a refused batch is stored; before, its other events were,
            # and they come back as duplicates on the next try: delivered by us all the same.
            ids = [event.get("transaction_id") for event in remaining]
            ours = sum(1 for index in stored if ids[index] in tried)
            report.sent += ours
            report.already_in_lago += len(stored) - ours
            tried.update(ids)
            remaining = [event for index, event in enumerate(remaining) if index not in stored]
        return report

    def health(self) -> Mapping[str, Any]:
        """Lago's /health answer (its version), or an error saying why it is unreachable."""
        return _json(self._request("GET", "/health"))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        report: SendReport | None = None,
    ) -> httpx.Response:
        """One request, tried again on 429, 5xx and connection trouble within the budget."""
        deadline = self._clock() + self.retry.total_seconds
        for attempt in itertools.count(1):
            if report is not None:
                report.requests += 1
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TransportError as error:  # refused, reset, dropped, timed out
                if _is_certificate_failure(error):
                    raise ConfigError(
                        f"the TLS certificate of {self.base_url} failed verification ({error}): "
                        "fix the server's certificate, or trust its CA (SSL_CERT_FILE)"
                    ) from None
                problem, headers = f"{type(error).__name__}: {error}", {}
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    _raise_for_status(response, self.base_url)
                    return response
                problem, headers = f"HTTP {response.status_code}", dict(response.headers)
            with self._rng_lock:
                wait = self.retry.delay(attempt, headers, rng=self._rng)
            if self._clock() + wait > deadline:
                raise LagoUnavailable(
                    f"Lago at {self.base_url} kept failing {method} {path} ({problem}) for "
                    f"{self.retry.total_seconds:.0f} s and {attempt} tries: check that it is up; "
                    "running again later is safe"
                )
            log.info("Lago %s %s: %s; trying again in %.1f s", method, path, problem, wait)
            if report is not None:
                report.retries += 1
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def normalize_base_url(raw: str, *, setting: str = "LAGO_API_BASE") -> str:
    """LiteLLM's LAGO_API_BASE (the root, e.g. http://lago:3000) without a trailing slash."""
    value = raw.strip().rstrip("/") if raw else ""
    url = httpx.URL(value) if value else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"{setting}={raw!r} is not an http(s) URL: give Lago's API root, "
            "e.g. http://localhost:3000 or https://api.getlago.com"
        )
    if url.path.rstrip("/").endswith("/api/v1"):
        raise ConfigError(
            f"{setting} ends in /api/v1: give the root, e.g. {value.removesuffix('/api/v1')} "
            "(reconcile, like LiteLLM, adds /api/v1/events itself)"
        )
    return value


def _raise_for_status(response: httpx.Response, base_url: str) -> None:
    """Turn every answer but a success or a 422 into an error that says what to fix."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status < 300 or status == 422:
        return
    if status in (401, 403):
        raise ConfigError(
            f"Lago at {base_url} refused the API key (HTTP {status}): check LAGO_API_KEY "
            "(Lago > Developers > API keys)"
        )
    if status == 404:
        raise ConfigError(
            f"{base_url} has no Lago events API (HTTP 404 on {where}): check LAGO_API_BASE, "
            "the root URL of Lago's API (e.g. http://localhost:3000)"
        )
    if status == 400:
        raise LagoRejected(
            f"Lago at {base_url} answered 400 Bad Request to {where} ({response.text[:200]}): "
            "is LAGO_API_BASE Lago's API?"
        )
    raise LagoError(f"Lago at {base_url} answered HTTP {status} to {where}: {response.text[:200]}")


def _rejection(
    response: httpx.Response, batch: Sequence[Mapping[str, Any]], details: Mapping[str, Any]
) -> LagoRejected:
    reasons = [
        f"{batch[int(index)].get('transaction_id')}: {error}"
        for index, error in sorted(details.items(), key=lambda item: int(item[0]))
        if str(index).isdigit() and int(index) < len(batch)
    ]
    body = _json(response) if not reasons else {}
    return LagoRejected(
        f"Lago refused {len(reasons) or len(batch)} event(s) (HTTP {response.status_code}): "
        + ("; ".join(reasons) if reasons else str(body.get("error_details", body)))
    )


def _is_certificate_failure(error: BaseException) -> bool:
    """Whether a connection failed on certificate verification, which no retry can mend."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise LagoError(
            f"Lago answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}"
        ) from None
    return body if isinstance(body, dict) else {"body": body}


def _batched(events: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(events)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _first_done(pending: set[concurrent.futures.Future[SendReport]]) -> SendReport:
    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
    future = done.pop()
    pending.discard(future)
    return future.result()
