"""Lago unreachable or misconfigured, over real sockets: one true retry budget, exit 2 at once."""

import base64
import http.server
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import DAY, LAGO_KEY
from test_cli import reconcile, run

from reconcile.errors import ConfigError, LagoUnavailable
from reconcile.lago.answers import hide_password, normalize_base_url
from reconcile.lago.client import LagoClient
from reconcile.lago.retry import RetryPolicy
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect
from reconcile.testing.factory import SpendLog, SpendLogFactory

WINDOW = ["--since", "2026-11-01", "--until", "2026-11-02"]


def closed_port() -> int:
    """A local port nobody listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def https_url(lago: LagoEmulator) -> str:
    return lago.url.replace("http://", "https://")


def test_a_refused_connection_gives_up_after_the_budget_and_says_so_truly() -> None:
    client = LagoClient(
        f"http://127.0.0.1:{closed_port()}", LAGO_KEY, retry=RetryPolicy(total_seconds=2)
    )
    started = time.monotonic()
    with client, pytest.raises(LagoUnavailable) as raised:
        client.health()
    took = time.monotonic() - started
    assert 2 <= took < 3
    found = re.search(r"for (\d+) s and (\d+) tries", str(raised.value))
    assert found, raised.value
    assert int(found.group(1)) == 2
    assert int(found.group(2)) == client.requests > 2
    assert "Connection refused" in str(raised.value)


def test_concurrent_requests_share_one_budget() -> None:
    client = LagoClient(f"http://127.0.0.1:{closed_port()}", LAGO_KEY, concurrency=4,
                        batch_size=1, retry=RetryPolicy(total_seconds=2))  # fmt: skip
    events = [{"transaction_id": f"t{index}", "external_subscription_id": "c", "code": "x"}
              for index in range(40)]  # fmt: skip
    started = time.monotonic()
    with client, pytest.raises(LagoUnavailable):
        client.send_events(events)
    # Each of the 40 batches had its own 2 s before: 20 s. Now all give up together.
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("url", ["http://nonexistent.invalid", "https://lago.nonexistent.invalid/"])
def test_a_name_that_does_not_resolve_is_a_configuration_error_at_once(url: str) -> None:
    started = time.monotonic()
    with LagoClient(url, LAGO_KEY) as client, pytest.raises(ConfigError) as raised:
        client.health()
    assert time.monotonic() - started < 5
    assert client.requests == 1
    assert "does not resolve" in str(raised.value)
    assert "LAGO_API_BASE" in str(raised.value)


def test_https_to_a_plain_http_port_is_a_configuration_error_at_once(lago: LagoEmulator) -> None:
    with LagoClient(https_url(lago), LAGO_KEY) as client, pytest.raises(ConfigError) as raised:
        client.health()
    assert client.requests == 1
    assert "LAGO_API_BASE" in str(raised.value)
    assert "use http://" in str(raised.value)


def test_5xx_and_429_are_still_retried_until_they_pass(lago: LagoEmulator) -> None:
    lago.faults.server_error(2, status=502)
    lago.faults.rate_limit(2, reset_seconds=0)
    lago.faults.drop_connections(1)
    policy = RetryPolicy(first_delay=0.05, max_delay=0.2, total_seconds=10)
    with LagoClient(lago.url, LAGO_KEY, retry=policy) as client:
        assert client.health()
    statuses = [record.status for record in lago.requests]
    assert sorted(statuses[:-1], key=str) == [429, 429, 502, 502, None]
    assert statuses[-1] == 200


# From the command line, with the spend-log database and the ledger.


@pytest.fixture
def env(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    clean_environment: None,
) -> dict[str, str]:
    written: list[SpendLog] = list(factory.day(DAY, 50))
    insert(*written)
    settings = {"DATABASE_URL": litellm_db.url(), "LAGO_API_KEY": LAGO_KEY,
                "LAGO_API_EVENT_CODE": "openai_tokens"}  # fmt: skip
    assert run(["migrate"], env=settings).exit_code == 0
    return settings


def test_cli_unresolvable_lago_exits_2_at_once(env: dict[str, str]) -> None:
    started = time.monotonic()
    result = reconcile(
        "backfill", *WINDOW, env={**env, "LAGO_API_BASE": "http://nonexistent.invalid"}
    )
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 30
    assert "LAGO_API_BASE" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("reconcile: error")]
    assert len(errors) == 1
    assert "Traceback" not in result.stderr


def test_cli_https_to_plain_http_exits_2(env: dict[str, str], lago: LagoEmulator) -> None:
    result = run(["backfill", *WINDOW], env={**env, "LAGO_API_BASE": https_url(lago)})
    assert result.exit_code == 2, result.stderr
    assert "TLS handshake failed" in result.stderr


def test_cli_refused_exits_1_within_the_budget_given(env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    by_option = run(
        ["backfill", *WINDOW, "--lago-retry-budget", "2s"], env={**env, "LAGO_API_BASE": base}
    )
    by_env = run(["backfill", *WINDOW],
                 env={**env, "LAGO_API_BASE": base, "RECONCILE_LAGO_RETRY_BUDGET": "1"})  # fmt: skip
    assert time.monotonic() - started < 10
    assert (by_option.exit_code, by_env.exit_code) == (1, 1)
    assert re.search(r"for 2 s and \d+ tries", by_option.stderr), by_option.stderr
    assert re.search(r"for 1 s and \d+ tries", by_env.stderr), by_env.stderr


def test_cli_a_bad_budget_names_its_setting(env: dict[str, str], lago: LagoEmulator) -> None:
    result = run(["backfill", *WINDOW],
                 env={**env, "LAGO_API_BASE": lago.url, "RECONCILE_LAGO_RETRY_BUDGET": "soon"})  # fmt: skip
    assert result.exit_code == 2
    assert "RECONCILE_LAGO_RETRY_BUDGET 'soon' is not a duration" in result.stderr


# Credentials in LAGO_API_BASE, for a gateway in front of Lago: used, never shown or recorded.


#: The user info a gateway may take in the URL -> (the secret in it, how it is shown).
CREDENTIALS = {
    "user and password": ("user:secret", "secret", "user:***"),
    "token alone": ("GWPASS777", "GWPASS777", "***"),  # sent as Basic auth, empty password
}


@pytest.fixture(params=list(CREDENTIALS.values()), ids=list(CREDENTIALS))
def credentials(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    return request.param  # type: ignore[no-any-return]


class Gateway(http.server.ThreadingHTTPServer):
    """A gateway that takes HTTP Basic `userinfo` and calls Lago with its own key."""

    def __init__(self, lago: LagoEmulator, userinfo: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.lago = lago
        user, _, password = userinfo.partition(":")
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _Forward(http.server.BaseHTTPRequestHandler):
    server: Gateway

    def _forward(self) -> None:
        if self.headers.get("Authorization") != self.server.expected:
            self.send_response(401)
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = httpx.request(self.command, self.server.lago.url + self.path, content=body,
                               headers={"Authorization": f"Bearer {LAGO_KEY}",
                                        "Content-Type": "application/json"})  # fmt: skip
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def gateway(lago: LagoEmulator, credentials: tuple[str, str, str]) -> Iterator[str]:
    userinfo, _, _ = credentials
    server = Gateway(lago, userinfo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{userinfo}@127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def ledger_rows_with(database: Database, word: str) -> list[tuple[str, str]]:
    """(table, row) of every ledger row whose text holds `word`, and how many rows were read."""
    found = []
    with connect(database) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'litellm_reconcile'"
        )]  # fmt: skip
        assert tables
        for table in tables:
            rows = connection.execute(f'SELECT r::text FROM litellm_reconcile."{table}" AS r')
            found += [(table, text) for (text,) in rows if word in text]
    return found


def test_credentials_in_lago_api_base_stay_secret_on_success_and_failure(
    env: dict[str, str], litellm_db: Database, lago: LagoEmulator, gateway: str,
    credentials: tuple[str, str, str],
) -> None:  # fmt: skip
    userinfo, secret, shown = credentials
    done = run(["backfill", *WINDOW, "--yes"], env={**env, "LAGO_API_BASE": gateway})
    assert done.exit_code == 0, done.stderr
    assert lago.stored_events()  # through the gateway, with the URL's credentials
    refused = f"http://{userinfo}@127.0.0.1:{closed_port()}"
    failed = run(
        ["backfill", *WINDOW, "--lago-retry-budget", "1s"], env={**env, "LAGO_API_BASE": refused}
    )
    assert failed.exit_code == 1
    assert f"http://{shown}@127.0.0.1" in failed.stderr
    for result in (done, failed):
        assert secret not in result.stdout + result.stderr
    assert ledger_rows_with(litellm_db, secret) == []
    recorded = ledger_rows_with(litellm_db, f"/{shown}@")
    assert {table for table, _ in recorded} == {"runs"}
    assert len(recorded) == 2  # both runs, the failed one included


def test_credentials_lago_refuses_are_named_as_the_cause_not_the_key(
    env: dict[str, str], litellm_db: Database, lago: LagoEmulator,
    credentials: tuple[str, str, str],
) -> None:  # fmt: skip
    userinfo, secret, shown = credentials
    straight = lago.url.replace("http://", f"http://{userinfo}@")
    refused = run(["backfill", *WINDOW, "--yes"], env={**env, "LAGO_API_BASE": straight})
    assert refused.exit_code == 2, refused.stderr
    assert "LAGO_API_BASE carries credentials" in refused.stderr
    assert f"Lago at http://{shown}@127.0.0.1:" in refused.stderr
    assert secret not in refused.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@lago.example.com/", "https://user:***@lago.example.com/"),
        ("http://user:p%40ss@127.0.0.1:3000", "http://user:***@127.0.0.1:3000"),
        ("https://GWPASS777@lago.example.com", "https://***@lago.example.com"),
        ("http://GWPASS777@127.0.0.1:3301/", "http://***@127.0.0.1:3301/"),
        ("https://tok%40en@lago.example.com", "https://***@lago.example.com"),
        ("https://user:@lago.example.com", "https://user:***@lago.example.com"),
        ("https://:secret@lago.example.com", "https://:***@lago.example.com"),
        ("https://user:se@cret@lago.example.com", "https://user:***@lago.example.com"),
        ("https://lago.example.com/a@b", "https://lago.example.com/a@b"),
        ("http://localhost:3000", "http://localhost:3000"),
    ],
)
def test_passwords_in_base_urls_are_masked(url: str, shown: str) -> None:
    assert hide_password(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [("ftp://user:secret@lago", "user:***@"), ("https://user:secret@lago/api/v1", "user:***@"),
     ("ftp://secret@lago", "//***@"), ("https://secret@lago/api/v1", "//***@")],
)  # fmt: skip
def test_a_malformed_base_url_is_refused_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        normalize_base_url(url)
    assert "secret" not in str(raised.value)
    assert shown in str(raised.value)


@pytest.mark.parametrize(
    ("url", "secret", "shown"),
    [("http://user:pa/ss@127.0.0.1:3301", "pa", "LAGO_API_BASE is not a valid URL"),
     ("http://127.0.0.1:port", None, "LAGO_API_BASE='http://127.0.0.1:port' (Invalid port")],
)  # fmt: skip
def test_an_unparsable_base_url_is_a_configuration_error(
    url: str, secret: str | None, shown: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        normalize_base_url(url)
    assert str(raised.value).startswith(shown)
    assert secret is None or secret not in str(raised.value)
