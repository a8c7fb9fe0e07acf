"""The Lago client over a real socket against the emulator: every store, mode and fault."""

import datetime as dt
import http.server
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from reconcile.errors import ConfigError, LagoError, LagoRejected, LagoUnavailable
from reconcile.lago.answers import normalize_base_url
from reconcile.lago.client import LagoClient
from reconcile.lago.events import arrow_page, frame
from reconcile.lago.retry import RetryPolicy
from reconcile.lago_emulator import LagoEmulator
from reconcile.window import UTC, Window

KEY = "test-key-7f3a9c"
DAY = Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))
MIDNIGHT = 1793491200


def event(
    index: int, *, subscription: str | None = None, seconds: float | None = None
) -> dict[str, Any]:
    return {
        "transaction_id": f"rc1-{index:032x}",
        "external_subscription_id": subscription or f"cust_{index % 3}",
        "code": "tokens",
        "timestamp": f"{seconds if seconds is not None else MIDNIGHT + index * 7.001:.3f}",
        "properties": {"model": "gpt-4o-mini", "response_cost": "0.000015", "prompt_tokens": 10},
    }


class FakeTime:
    """A clock that only moves when the client sleeps: retries cost no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()


class CountingTransport(httpx.HTTPTransport):
    """A real socket transport that records how many requests were in flight at once."""

    def __init__(self, before: Callable[[httpx.Request], None] | None = None) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.before = before

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.before:
            self.before(request)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = super().handle_request(request)
            response.read()
            return response
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(params=["postgres", "clickhouse", "legacy"])
def lago(request: pytest.FixtureRequest) -> Iterator[LagoEmulator]:
    store = "clickhouse" if request.param == "clickhouse" else "postgres"
    with LagoEmulator(
        api_key=KEY, store=store, legacy_partial_batches=request.param == "legacy"
    ) as emulator:
        yield emulator


@pytest.fixture
def postgres_lago() -> Iterator[LagoEmulator]:
    with LagoEmulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def client_for(lago: LagoEmulator, fake_time: FakeTime, **options: Any) -> LagoClient:
    return LagoClient(lago.url, KEY, sleep=fake_time.sleep, clock=fake_time.clock, **options)


def stored_ids(lago: LagoEmulator) -> list[str]:
    return sorted(stored["transaction_id"] for stored in lago.stored_events())


def test_events_go_in_batches_of_at_most_100(lago: LagoEmulator, fake_time: FakeTime) -> None:
    with client_for(lago, fake_time) as client:
        report = client.send_events(event(index) for index in range(250))
    assert (report.sent, len(report.already_in_lago), report.requests) == (250, 0, 3)
    assert [record.path for record in lago.requests] == ["/api/v1/events/batch"] * 3
    assert stored_ids(lago) == sorted(event(index)["transaction_id"] for index in range(250))


def test_sending_again_bills_nothing_twice(lago: LagoEmulator, fake_time: FakeTime) -> None:
    events = [event(index) for index in range(150)]
    with client_for(lago, fake_time) as client:
        client.send_events(events[:70])
        report = client.send_events(events)
    if lago._store.store.value == "clickhouse":
        # Every POST is a 200 and the list keeps copies; billing counts one per (id, timestamp).
        assert report.sent == 150
        copies = {
            (stored["transaction_id"], stored["timestamp"]) for stored in lago.stored_events()
        }
        assert len(copies) == 150
    else:
        assert (report.sent, len(report.already_in_lago)) == (80, 70)
        assert set(report.delivered) == {
            (item["transaction_id"], item["external_subscription_id"]) for item in events[70:]
        }
        assert stored_ids(lago) == sorted(item["transaction_id"] for item in events)


def test_concurrency_is_bounded(postgres_lago: LagoEmulator, fake_time: FakeTime) -> None:
    postgres_lago.faults.latency(0.05)
    transport = CountingTransport()
    with client_for(postgres_lago, fake_time, concurrency=3, transport=transport) as client:
        report = client.send_events(event(index) for index in range(1200))
    assert report.sent == 1200
    assert transport.most_in_flight == 3


def test_other_refusals_name_each_transaction_id_and_reason(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    events = [event(index) for index in range(5)]
    events[1] = {**events[1], "code": ""}
    events[3] = {**events[3], "timestamp": "2026-11-01T00:00:00Z"}
    with client_for(postgres_lago, fake_time) as client, pytest.raises(LagoRejected) as raised:
        client.send_events(events)
    message = str(raised.value)
    assert f"{events[1]['transaction_id']}: {{'code': ['value_is_mandatory']}}" in message
    assert f"{events[3]['transaction_id']}: {{'timestamp': ['invalid_format']}}" in message
    assert events[0]["transaction_id"] not in message
    assert postgres_lago.stored_events() == []  # all or nothing


def test_a_wrong_key_is_a_configuration_error_that_hides_the_key(
    postgres_lago: LagoEmulator,
) -> None:
    with (
        LagoClient(postgres_lago.url, "wrong-key-123") as client,
        pytest.raises(ConfigError) as raised,
    ):
        client.send_events([event(1)])
    assert "check LAGO_API_KEY" in str(raised.value)
    assert "wrong-key-123" not in str(raised.value)
    assert "wrong-key-123" not in repr(client)


def test_a_wrong_base_url_is_a_configuration_error(postgres_lago: LagoEmulator) -> None:
    with (
        LagoClient(postgres_lago.url + "/lago", KEY) as client,
        pytest.raises(ConfigError) as raised,
    ):
        listed(client)
    assert "check LAGO_API_BASE" in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("https://api.getlago.com", "https://api.getlago.com"),
        (" https://lago.example.com/proxy/ ", "https://lago.example.com/proxy"),
    ],
)
def test_base_urls_are_taken_as_litellm_takes_them(raw: str, expected: str) -> None:
    assert normalize_base_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "is not an http\\(s\\) URL"),
        ("localhost:3000", "is not an http\\(s\\) URL"),
        ("ftp://lago", "is not an http\\(s\\) URL"),
        ("http://localhost:3000/api/v1", "ends in /api/v1"),
    ],
)
def test_bad_base_urls_name_the_setting(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        normalize_base_url(raw)
    assert str(raised.value).startswith("LAGO_API_BASE")


def test_a_400_from_something_that_is_not_lago_is_explained(fake_time: FakeTime) -> None:
    class Teapot(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"Bad Request")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Teapot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = LagoClient(
            f"http://127.0.0.1:{server.server_address[1]}",
            KEY,
            sleep=fake_time.sleep,
            clock=fake_time.clock,
        )
        with client, pytest.raises(LagoRejected, match="is LAGO_API_BASE Lago's API"):
            client.send_events([event(1)])
        assert fake_time.waits == []  # a 400 is never retried
    finally:
        server.shutdown()
        server.server_close()


def test_429_waits_as_long_as_lago_says(postgres_lago: LagoEmulator, fake_time: FakeTime) -> None:
    postgres_lago.faults.rate_limit(2, reset_seconds=7)
    with client_for(postgres_lago, fake_time) as client:
        report = client.send_events(event(index) for index in range(10))
    assert (report.sent, report.retries, report.requests) == (10, 2, 3)
    assert fake_time.waits == [7.0, 7.0]
    assert [record.status for record in postgres_lago.requests] == [429, 429, 200]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_back_off_and_recover(
    postgres_lago: LagoEmulator, fake_time: FakeTime, status: int
) -> None:
    postgres_lago.faults.server_error(3, status=status)
    with client_for(
        postgres_lago, fake_time, retry=RetryPolicy(first_delay=1, max_delay=60)
    ) as client:
        report = client.send_events(event(index) for index in range(10))
    assert report.sent == 10
    assert len(fake_time.waits) == 3
    for attempt, wait in enumerate(fake_time.waits, start=1):
        assert 2 ** (attempt - 1) / 2 <= wait <= 2 ** (attempt - 1)
    assert stored_ids(postgres_lago) == sorted(
        event(index)["transaction_id"] for index in range(10)
    )


def test_dropped_connections_are_retried_without_doubles(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    postgres_lago.faults.drop_connections(2)
    with client_for(postgres_lago, fake_time) as client:
        report = client.send_events(event(index) for index in range(30))
    assert (report.sent, report.retries) == (30, 2)
    assert len(stored_ids(postgres_lago)) == 30


def test_a_batch_that_was_stored_before_the_answer_was_lost_counts_as_delivered(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    events = [event(index) for index in range(40)]
    with client_for(postgres_lago, fake_time) as client:
        client.send_events(events)  # stored, and then, say, the answer never arrived
        report = client.send_events(events)
    assert (report.sent, len(report.already_in_lago)) == (0, 40)


def test_read_timeouts_are_retried(postgres_lago: LagoEmulator, fake_time: FakeTime) -> None:
    postgres_lago.faults.latency(1.0)
    fake_time.on_sleep = postgres_lago.faults.clear
    timeout = httpx.Timeout(connect=5.0, read=0.2, write=5.0, pool=5.0)
    with client_for(postgres_lago, fake_time, timeout=timeout) as client:
        report = client.send_events(event(index) for index in range(5))
    assert (report.sent, report.retries) == (5, 1)


def test_retries_stop_within_the_budget(postgres_lago: LagoEmulator, fake_time: FakeTime) -> None:
    postgres_lago.faults.server_error(1000)
    policy = RetryPolicy(first_delay=1, max_delay=8, total_seconds=60)
    with (
        client_for(postgres_lago, fake_time, retry=policy) as client,
        pytest.raises(LagoUnavailable) as raised,
    ):
        client.send_events([event(1)])
    assert sum(fake_time.waits) <= 60
    assert "kept failing POST /api/v1/events/batch (HTTP 503)" in str(raised.value)
    assert "running again later is safe" in str(raised.value)


def test_unreachable_lago_is_unavailable_not_a_crash(fake_time: FakeTime) -> None:
    client = LagoClient("http://127.0.0.1:1", KEY, sleep=fake_time.sleep, clock=fake_time.clock,
                        retry=RetryPolicy(total_seconds=10))  # fmt: skip
    with client, pytest.raises(LagoUnavailable, match="ConnectError"):
        client.health()


def test_listing_pages_through_a_window_and_its_slices(
    lago: LagoEmulator, fake_time: FakeTime
) -> None:
    events = [event(index) for index in range(600)]
    # Events exactly on slice edges, and one at the window's end (both ends are included).
    events += [event(10_000 + hour, seconds=MIDNIGHT + 3600 * hour) for hour in range(25)]
    with client_for(lago, fake_time, per_page=50) as client:
        client.send_events(events)
        found = listed(client)
    assert sorted(found["transaction_id"]) == sorted(item["transaction_id"] for item in events)
    first = found[found["transaction_id"] == events[0]["transaction_id"]].iloc[0]
    assert first["timestamp_ms"] == dt.datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000
    assert first["subscription"] == "cust_0"


def test_listing_is_right_when_lago_caps_per_page(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    postgres_lago.faults.per_page_cap(13)
    with client_for(postgres_lago, fake_time, per_page=1000) as client:
        client.send_events(event(index) for index in range(300))
        found = listed(client)
    assert found["transaction_id"].nunique() == len(found) == 300


def test_listing_filters_by_subscription_and_code(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    others = [{**event(1000 + index), "code": "other"} for index in range(5)]
    with client_for(postgres_lago, fake_time) as client:
        client.send_events([*(event(index) for index in range(30)), *others])
        found = listed(client, subscription="cust_1")
    assert sorted(found["transaction_id"]) == sorted(
        event(index)["transaction_id"] for index in range(30) if index % 3 == 1
    )


def test_a_listing_that_changes_underway_is_read_again(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    late = iter([event(5000, seconds=MIDNIGHT + 10)])

    def sneak_in(request: httpx.Request) -> None:
        if request.url.params.get("page") == "2":
            for item in late:  # once: a late event lands between two pages
                httpx.post(f"{postgres_lago.url}/api/v1/events", json={"event": item},
                           headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip

    with client_for(
        postgres_lago, fake_time, per_page=10, transport=CountingTransport(sneak_in)
    ) as client:
        client.send_events(event(index) for index in range(50))
        found = listed(client)
    assert sorted(found["transaction_id"]) == sorted(
        [*(event(index)["transaction_id"] for index in range(50)), event(5000)["transaction_id"]]
    )


def test_a_window_that_never_settles_is_refused(
    postgres_lago: LagoEmulator, fake_time: FakeTime
) -> None:
    counter = iter(range(6000, 7000))

    def keep_arriving(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.params.get("page") == "2":
            httpx.post(f"{postgres_lago.url}/api/v1/events", json={"event": event(next(counter), seconds=MIDNIGHT + 5)},
                       headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip

    with client_for(
        postgres_lago, fake_time, per_page=10, transport=CountingTransport(keep_arriving)
    ) as client:
        client.send_events(event(index) for index in range(50))
        with pytest.raises(LagoError, match="list only windows that are closed"):
            listed(client)


def test_the_api_key_stays_out_of_logs(
    postgres_lago: LagoEmulator, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    postgres_lago.faults.server_error(1)
    with client_for(postgres_lago, fake_time) as client:
        client.send_events([event(1)])
        listed(client)
    assert caplog.records
    assert KEY not in caplog.text
    assert KEY not in repr(client)


def listed(client: LagoClient, *, subscription: str | None = None) -> pd.DataFrame:
    """The day's events of code "tokens", as the matcher reads them."""
    return frame(client.list_slices("tokens", DAY, arrow_page, subscription=subscription))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, certificate = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, certificate


def test_tls_is_verified(self_signed: tuple[Path, Path], fake_time: FakeTime) -> None:
    import ssl

    key, certificate = self_signed
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = LagoClient(
            f"https://127.0.0.1:{server.server_address[1]}",
            KEY,
            sleep=fake_time.sleep,
            clock=fake_time.clock,
        )
        with client, pytest.raises(ConfigError, match="failed verification"):
            client.health()
        assert fake_time.waits == []
    finally:
        server.shutdown()
        server.server_close()
