"""Postgres faults, with real processes: refusals classified, timeouts, a half-dead connection."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DAY, ENV_NAMES, LAGO_KEY

from reconcile.errors import SourceError
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect, parse_database_url
from reconcile.testing.factory import SpendLogFactory

RECONCILE = str(Path(sys.executable).parent / "reconcile")
WINDOW = ["--since", "2026-11-01", "--until", "2026-11-03"]


def reconcile(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in ENV_NAMES}
    return subprocess.run([RECONCILE, *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


CASES = {
    "invalid option value": ("postgresql://root@127.0.0.1:5432/postgres?sslmode=bogus", 2,
                             "DATABASE_URL has an invalid parameter sslmode='bogus'"),
    "role missing (28000)": ("postgresql://nobody_here@127.0.0.1:5432/postgres", 2,
                             'role "nobody_here" does not exist'),
    "database missing (3D000)": ("postgresql://postgres@127.0.0.1:5432/no_such_db", 2,
                                 'database "no_such_db" does not exist'),
    "connection refused": ("postgresql://postgres@127.0.0.1:1/db", 1, "cannot connect"),
    # libpq refuses these before connecting: no server, no SQLSTATE, only its words.
    "port out of range": ("postgresql://user:secret-pass@127.0.0.1:99999/db", 2,
                          'DATABASE_URL (postgresql://user:***@127.0.0.1:99999/db): invalid port '
                          'number: "99999": give a port from 1 to 65535'),
    "port zero": ("postgresql://user@127.0.0.1:0/db", 2, 'invalid port number: "0"'),
    "ports without hosts": ("postgresql://user@127.0.0.1:5432,127.0.0.1:5433/db?port=5432,5433,5434",
                            2, "could not match 3 port numbers to 2 hosts: fix that option"),
}  # fmt: skip


@pytest.mark.parametrize(("url", "code", "message"), list(CASES.values()), ids=list(CASES))
def test_connection_failures_are_classified(url: str, code: int, message: str) -> None:
    result = reconcile("events", *WINDOW, env={"DATABASE_URL": url, "LAGO_API_EVENT_CODE": "t"})
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


ENVIRONMENT_CASES = {
    "PGPORT out of range": ({"PGPORT": "70000"}, 'invalid port number: "70000": give a port'),
    "PGPORT not a number": ({"PGPORT": "five"},
                            'invalid integer value "five" for connection option "port": give a port'),
    "PGTARGETSESSIONATTRS unknown": ({"PGTARGETSESSIONATTRS": "primaryish"},
                                     'invalid target_session_attrs value: "primaryish": fix that '
                                     "option in the URL, or in the PG* environment variable"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "message"), list(ENVIRONMENT_CASES.values()), ids=list(ENVIRONMENT_CASES)
)
def test_an_option_libpq_refuses_from_the_environment_is_a_configuration_error(
    variables: dict[str, str], message: str
) -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1/postgres", "LAGO_API_EVENT_CODE": "t"}
    result = reconcile("events", *WINDOW, env={**env, **variables})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    with silent_server() as port:
        started = time.monotonic()
        result = reconcile(
            "events", *WINDOW, "--db-connect-timeout", "2s",
            env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/db", "LAGO_API_EVENT_CODE": "t"},
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "no answer within 2 s (connect timeout)" in result.stderr
    assert elapsed < 15


def test_the_urls_own_timeouts_win_over_the_options(pg_admin: Database) -> None:
    import datetime as dt

    url = pg_admin.replace(connect_timeout="7", options="-c statement_timeout=1234").url()
    database = parse_database_url(url).with_timeouts(
        connect=dt.timedelta(seconds=3), statement=dt.timedelta(minutes=1)
    )
    assert database.libpq_params["connect_timeout"] == "7"
    assert database.libpq_params["keepalives"] == "1"
    assert database.silence_limit is None
    with connect(database) as connection:
        assert connection.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
    plain = parse_database_url(pg_admin.url()).with_timeouts(
        connect=dt.timedelta(seconds=3), statement=dt.timedelta(minutes=1)
    )
    assert plain.libpq_params["connect_timeout"] == "3"
    with connect(plain) as connection:
        assert connection.execute("SHOW statement_timeout").fetchone() == ("1min",)
        assert connection.execute("SHOW application_name").fetchone() == ("reconcile",)


def test_concurrent_migrations_all_succeed(new_database: Callable[[], Database]) -> None:
    database = new_database()
    env = {"DATABASE_URL": database.url()}
    base = {key: value for key, value in os.environ.items() if key not in ENV_NAMES}
    processes = [
        subprocess.Popen([RECONCILE, "migrate"], env={**base, **env}, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outcomes = [(process.wait(timeout=120), process.stderr.read()) for process in processes]  # type: ignore[union-attr]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert sum("updated" in text for _, text in outcomes) == 1, outcomes
    with connect(database) as connection:
        versions = connection.execute(
            "SELECT version_num FROM litellm_reconcile.alembic_version"
        ).fetchall()
    assert versions == [("005_run_parts",)]


def test_the_ledger_works_behind_pgbouncer_transaction_pooling(
    litellm_db: Database, lago: LagoEmulator
) -> None:
    """No session state outlives a transaction (leases, not a session lock): `?pgbouncer=true`
    URLs run as any other."""
    env = {"DATABASE_URL": litellm_db.url() + "?pgbouncer=true", "LAGO_API_BASE": lago.url,
           "LAGO_API_KEY": LAGO_KEY, "LAGO_API_EVENT_CODE": "t"}  # fmt: skip
    assert reconcile("migrate", env=env).returncode == 0
    done = reconcile("backfill", *WINDOW, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr


class BlackHoleProxy:
    """Forwards TCP to Postgres; a connection that has sent `after` bytes to its client then
    stops forwarding in both directions without closing anything (a half-dead network path)."""

    def __init__(self, upstream: tuple[str, int], after: int) -> None:
        self.upstream, self.after = upstream, after
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopping = threading.Event()
        self.black_holed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            hole = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, upstream, None, hole), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.after, hole), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None,
              hole: threading.Event) -> None:  # fmt: skip
        sent = 0
        while not self.stopping.is_set():
            if hole.is_set():
                self.stopping.wait(0.1)  # hold both sockets open, forward nothing
                continue
            try:
                data = source.recv(16384)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
            sent += len(data)
            if limit is not None and sent > limit:
                hole.set()
                self.black_holed.set()
        if not hole.is_set():
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping.set()
        self.server.close()
        for end in self.sockets:
            with contextlib.suppress(OSError):
                end.close()


def test_a_half_dead_connection_fails_the_read_and_frees_the_lock(
    litellm_db: Database, lago: LagoEmulator, insert: Callable[..., None]
) -> None:
    insert(*SpendLogFactory(seed=3).day(DAY, 3000))
    host, port = litellm_db.params["host"], int(litellm_db.params.get("port", "5432"))
    proxy = BlackHoleProxy((host, port), after=64 * 1024)
    try:
        through = litellm_db.replace(host="127.0.0.1", port=str(proxy.port))
        env = {"DATABASE_URL": through.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": LAGO_KEY,
               "LAGO_API_EVENT_CODE": "t"}  # fmt: skip
        assert reconcile("migrate", env=env).returncode == 0
        started = time.monotonic()
        timeouts = ["--db-connect-timeout", "2s", "--db-statement-timeout", "3s"]
        failed = reconcile("backfill", *WINDOW, "--dry-run", *timeouts, env=env, timeout=60)
        elapsed = time.monotonic() - started
        assert proxy.black_holed.is_set()
        assert failed.returncode == 1, failed.stderr
        assert "sent nothing for 5 s in the middle of a read" in failed.stderr
        assert elapsed < 30, elapsed
        # The lock's connection was not the stalled one: it ended with the process.
        with connect(litellm_db) as connection:
            deadline = time.monotonic() + 10
            while connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            ).fetchone() != (0,):
                assert time.monotonic() < deadline, "the run lock was not released"
                time.sleep(0.2)
            status = connection.execute(
                "SELECT status FROM litellm_reconcile.runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
        assert status == ("failed",)
        again = reconcile(
            "backfill", *WINDOW, "--dry-run", env={**env, "DATABASE_URL": litellm_db.url()}
        )
        assert again.returncode in (0, 3), again.stderr
    finally:
        proxy.close()


def test_a_statement_timeout_in_the_url_is_named_as_such(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    insert(*factory.day(DAY, 2000))
    assert reconcile("migrate", env={"DATABASE_URL": litellm_db.url()}).returncode == 0
    hurried = litellm_db.replace(options="-c statement_timeout=1").url()
    env = {"DATABASE_URL": hurried, "LAGO_API_BASE": lago.url, "LAGO_API_KEY": LAGO_KEY,
           "LAGO_API_EVENT_CODE": "openai_tokens"}  # fmt: skip
    done = reconcile("backfill", "--since", "2026-11-01", "--until", "2026-11-02", env=env)
    assert done.returncode == 1, done.stderr
    assert "statement_timeout" in done.stderr and "raise" in done.stderr
    assert "check that Postgres is up" not in done.stderr


def test_a_statement_cancelled_anywhere_names_the_timeout(pg_admin: Database) -> None:
    hurried = parse_database_url(pg_admin.replace(options="-c statement_timeout=50").url())
    with (
        pytest.raises(SourceError, match="raise statement_timeout"),
        connect(hurried) as connection,
    ):
        connection.execute("SELECT pg_sleep(1)")
