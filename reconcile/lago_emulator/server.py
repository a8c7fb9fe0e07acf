"""A real HTTP server that answers like lago-api v1.51.0's events API, with faults to inject.

`rails.answer` decides each answer; this module owns the socket, the clock, the
request log and the faults, which play Lago Cloud's gateway: 429s with X-RateLimit-* headers,
5xx answers, latency, a per_page cap, connections closed without an answer. The subscription
and invoice listings, and the helpers that fill them, are `billing`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from reconcile.lago_emulator.billing import Billing
from reconcile.lago_emulator.rails import Request, answer, status_reply
from reconcile.lago_emulator.store import EventStore, Reply, Store

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "lago-emulator-api-key"


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received; `status` is None when its connection was dropped."""

    method: str
    path: str
    query: str
    status: int | None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the faults do to one request."""

    latency: float = 0.0
    drop: bool = False
    reply: Reply | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    per_page_cap: int | None = None


class Faults:
    """Trouble for the next requests, in this order: drops, 429s, then 5xx answers.

    Latency and the per_page cap last until `clear()`. Safe to arm from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cap: int | None = None
        self.clear()

    def rate_limit(self, times: int = 1, *, reset_seconds: int = 1, limit: int = 500) -> None:
        """Answer the next `times` requests 429, as Lago Cloud's rate limiter does."""
        with self._lock:
            self._rate_limited, self._reset_seconds, self._limit = times, reset_seconds, limit

    def server_error(self, times: int = 1, *, status: int = 503) -> None:
        """Answer the next `times` requests with a 5xx status."""
        with self._lock:
            self._server_errors, self._error_status = times, status

    def latency(self, seconds: float) -> None:
        """Wait `seconds` before answering every request."""
        with self._lock:
            self._latency = seconds

    def per_page_cap(self, cap: int | None) -> None:
        """Cap per_page when listing, as a Kaminari max_per_page would (None: no cap)."""
        with self._lock:
            self._cap = cap

    def drop_connections(self, times: int = 1) -> None:
        """Close the connection of the next `times` requests without answering."""
        with self._lock:
            self._drops = times

    def clear(self) -> None:
        """No more faults."""
        with self._lock:
            self._drops = self._rate_limited = self._server_errors = 0
            self._reset_seconds, self._limit, self._error_status = 1, 500, 503
            self._latency = 0.0
            self._cap = None

    def _next(self) -> _Plan:
        """The plan for one request, using up one armed fault."""
        with self._lock:
            plan = _Plan(latency=self._latency, per_page_cap=self._cap)
            if self._drops:
                self._drops -= 1
                return dataclasses.replace(plan, drop=True)
            if self._rate_limited:
                self._rate_limited -= 1
                headers = {
                    "X-RateLimit-Limit": str(self._limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(self._reset_seconds),
                }
                return dataclasses.replace(plan, reply=status_reply(429), headers=headers)
            if self._server_errors:
                self._server_errors -= 1
                return dataclasses.replace(plan, reply=status_reply(self._error_status))
            return plan


class LagoEmulator:
    """Lago's events API on a real socket: `with LagoEmulator() as lago: ... lago.url ...`.

    `clock` freezes reception time (events sent without a timestamp get it); None follows
    the real clock. Naive datetimes are read as UTC. `add_subscription`, `add_invoice`, ...
    fill the subscriptions and invoices it lists.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        store: str = "postgres",
        legacy_partial_batches: bool = False,
        clock: datetime | None = None,
    ) -> None:
        self.faults = Faults()
        self._address = (host, port)
        self._api_key = api_key
        self._store = EventStore(Store(store), legacy_partial_batches=legacy_partial_batches)
        self._billing = Billing(self.now, organization_id=self._store.organization_id)
        # Fill the subscriptions and invoices it lists (no HTTP, no request logged).
        self.add_subscription = self._billing.add_subscription
        self.add_invoice = self._billing.add_invoice
        self.set_invoice_status = self._billing.set_invoice_status
        self.deny_read = self._billing.deny_read
        self._lock = threading.RLock()
        self._frozen_at = clock
        self._requests: list[RequestRecord] = []
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None

    def __repr__(self) -> str:
        where = self.url if self._server else "not started"
        return f"LagoEmulator({where}, store={self._store.store.value})"

    def __enter__(self) -> LagoEmulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. http://127.0.0.1:41234."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LagoEmulator:
        """Listen, and answer from a background thread."""
        self._server = _Server(self._address, self)
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="lago-emulator", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            for connection in self._connections:  # wakes handlers waiting on keep-alive
                with contextlib.suppress(OSError):  # already closed by its client
                    connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._server = None

    def now(self) -> datetime:
        """The emulator's reception time."""
        with self._lock:
            return self._frozen_at or datetime.now(UTC)

    def set_clock(self, when: datetime) -> None:
        """Freeze reception time at `when`."""
        with self._lock:
            self._frozen_at = when

    def advance(self, by: timedelta | float) -> None:
        """Move the frozen clock forward (seconds or a timedelta); freezes it if it ran."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        self.set_clock(self.now() + step)

    def warm(self) -> None:
        """Do now the one-off work of a first listing (benchmarks time the client, not this)."""
        with self._lock:
            self._store.warm()

    def stored_events(self) -> list[dict[str, Any]]:
        """What Lago holds, as GET /api/v1/events shows it, in reception order (read only)."""
        with self._lock:
            return self._store.stored_events()

    def preload(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        received: Callable[[Mapping[str, Any]], datetime] | datetime | None = None,
    ) -> int:
        """`EventStore.preload` (no HTTP, no request logged); `received` defaults to the clock."""
        with self._lock:
            return self._store.preload(events, received=received or self.now())

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests were received so far."""
        with self._lock:
            return len(self._requests)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def _answer(self, request: Request, plan: _Plan) -> Reply:
        with self._lock:  # one request at a time changes the store, as one database would
            return answer(
                request,
                self._store,
                api_key=self._api_key,
                received=self.now(),
                per_page_cap=plan.per_page_cap,
                billing=self._billing,
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrent clients queue rather than wait out SYN retries

    def __init__(self, address: tuple[str, int], emulator: LagoEmulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as Puma serves Lago
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.emulator._track(self.connection, open_=False)
        super().finish()

    def do_GET(self) -> None:
        emulator = self.server.emulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        plan = emulator.faults._next()
        if plan.latency:
            time.sleep(plan.latency)
        split = urlsplit(self.path)
        if plan.drop:
            emulator._record(RequestRecord(self.command, split.path, split.query, None))
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, self.path, headers, body)
        reply = plan.reply or emulator._answer(request, plan)
        # Logged before answering, so a client that got its answer finds it in the log.
        emulator._record(RequestRecord(self.command, split.path, split.query, reply.status))
        content = reply.content()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        for name, value in plan.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815  (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)
