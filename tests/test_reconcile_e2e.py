"""End to end over real Postgres and the emulator's socket: backfill exactly once, whatever happens."""

import contextlib
import dataclasses
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DAY
from psycopg import sql

import reconcile
from reconcile import commands, leases
from reconcile.errors import ConfigError, LagoUnavailable, RunLocked
from reconcile.lago.client import LagoClient
from reconcile.lago.retry import RetryPolicy
from reconcile.lago_emulator import LagoEmulator
from reconcile.ledger import Ledger
from reconcile.postgres import Database, connect, server_identity
from reconcile.results import RunSummary
from reconcile.settings import DEFAULT_CHUNK_ROWS, ChargeBy, JobSettings
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.testing.litellm_schema import psql_command
from reconcile.window import UTC, Window

KEY = "e2e-key"
CODE = "openai_tokens"
WHOLE_DAY = Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))


def billable(rows: list[SpendLog], charge_by: ChargeBy = ChargeBy.END_USER_ID) -> list[SpendLog]:
    return [
        row for row in rows if row.status in ("success", None) and getattr(row, charge_by.column)
    ]


def charge_id(row: SpendLog, charge_by: ChargeBy) -> str:
    return str(getattr(row, charge_by.column))


def callback(
    lago: LagoEmulator,
    rows: list[SpendLog],
    *,
    charge_by: ChargeBy = ChargeBy.END_USER_ID,
    seed: int = 1,
) -> None:
    """What LiteLLM's live callback sends: a random id, no timestamp (Lago stamps reception)."""
    rng = random.Random(seed)
    with httpx.Client(base_url=lago.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for row in rows:
            lago.set_clock(
                (row.end + dt.timedelta(milliseconds=rng.randint(30, 4000))).replace(tzinfo=UTC)
            )
            properties = {"model": row.model, "response_cost": row.spend, "prompt_tokens": row.prompt_tokens,
                          "completion_tokens": row.completion_tokens, "total_tokens": row.total_tokens}  # fmt: skip
            body = {"event": {"transaction_id": f"{rng.getrandbits(122):032x}", "code": CODE,
                              "external_subscription_id": charge_id(row, charge_by), "properties": properties}}  # fmt: skip
            http.post("/api/v1/events", json=body).raise_for_status()
    lago.set_clock(dt.datetime.now(UTC))


def billed_once(
    lago: LagoEmulator, rows: list[SpendLog], charge_by: ChargeBy = ChargeBy.END_USER_ID
) -> None:
    """Lago bills each request exactly once: per fingerprint, as many billed events as rows."""
    stored = {
        (event["transaction_id"], event["timestamp"]): event for event in lago.stored_events()
    }  # copies bill once
    held = Counter(
        (event["external_subscription_id"], event["properties"]["model"], int(event["properties"]["prompt_tokens"]),
         int(event["properties"]["completion_tokens"]), float(event["properties"]["response_cost"]))
        for event in stored.values()
    )  # fmt: skip
    wanted = Counter(
        (charge_id(row, charge_by), row.model, row.prompt_tokens, row.completion_tokens, row.spend) for row in billable(rows, charge_by)
    )  # fmt: skip
    assert held == wanted


@pytest.fixture
def day(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> tuple[Database, list[SpendLog]]:
    rows = list(factory.day(DAY, 600))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    return litellm_db, rows


@pytest.fixture(params=["postgres", "clickhouse", "legacy"])
def lago(request: pytest.FixtureRequest) -> Iterator[LagoEmulator]:
    store = "clickhouse" if request.param == "clickhouse" else "postgres"
    with LagoEmulator(
        api_key=KEY, store=store, legacy_partial_batches=request.param == "legacy"
    ) as emulator:
        yield emulator


#: Rows per read chunk in this module's runs: every test runs at the default and at 1 and 2.
CHUNK_ROWS = DEFAULT_CHUNK_ROWS


@pytest.fixture(
    autouse=True, params=[DEFAULT_CHUNK_ROWS, 1, 2], ids=lambda rows: f"chunks-of-{rows}"
)
def chunk_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """A path that only works on one read chunk cannot pass: each test runs at three sizes."""
    monkeypatch.setattr(sys.modules[__name__], "CHUNK_ROWS", request.param)
    return request.param  # type: ignore[no-any-return]


def job(**changes: Any) -> JobSettings:
    return dataclasses.replace(
        JobSettings(
            mode="backfill",
            window=WHOLE_DAY,
            charge_by=ChargeBy.END_USER_ID,
            code=CODE,
            chunk_rows=CHUNK_ROWS,
        ),
        **changes,
    )


def backfill(
    database: Database, lago: LagoEmulator, settings: JobSettings | None = None, **client: Any
) -> RunSummary:
    with LagoClient(lago.url, KEY, **client) as lago_client:
        return commands.backfill(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            settings or job(), client=lago_client,
        )  # fmt: skip


def test_only_the_missing_rows_are_sent_and_a_second_run_sends_nothing(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator
) -> None:
    database, rows = day
    owed = billable(rows)
    reached = [row for index, row in enumerate(owed) if index % 10]  # the callback lost one in ten
    callback(lago, reached)
    first = backfill(database, lago)
    assert (first.matched_by_fingerprint, first.missing, first.sent) == (
        len(reached),
        len(owed) - len(reached),
        len(owed) - len(reached),
    )
    assert first.unexplained == {}
    billed_once(lago, rows)
    second = backfill(database, lago)
    assert (second.missing, second.sent, second.matched_by_id) == (0, 0, len(owed) - len(reached))
    billed_once(lago, rows)
    with connect(database) as connection:
        statuses = dict(
            connection.execute(
                "SELECT status, count(*) FROM litellm_reconcile.sent_events GROUP BY 1"
            ).fetchall()
        )
        runs = connection.execute(
            "SELECT status, counts->>'sent' FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()
        audit = connection.execute(
            "SELECT mode, source, event_code, charge_by, settings FROM litellm_reconcile.runs"
        ).fetchall()
    assert statuses == {"sent": len(owed) - len(reached)}
    assert runs == [("succeeded", str(len(owed) - len(reached))), ("succeeded", "0")]
    mode, source, code, charge_by, recorded = audit[0]
    assert (mode, source, code, charge_by) == ("backfill", str(database), CODE, "end_user_id")
    assert recorded["lago_api_base"] == lago.url
    assert recorded["reconcile_version"] == reconcile.__version__
    assert KEY not in str(audit)


@pytest.mark.parametrize("charge_by", list(ChargeBy))
def test_each_charge_by_mode(day: tuple[Database, list[SpendLog]], charge_by: ChargeBy) -> None:
    database, rows = day
    with LagoEmulator(api_key=KEY) as lago:
        owed = billable(rows, charge_by)
        callback(lago, owed[::2], charge_by=charge_by)
        summary = backfill(database, lago, job(charge_by=charge_by))
        assert summary.sent == len(owed) - len(owed[::2])
        billed_once(lago, rows, charge_by)


def test_unexplained_events_are_reported_not_deleted(day: tuple[Database, list[SpendLog]]) -> None:
    database, rows = day
    owed = billable(rows)
    with LagoEmulator(api_key=KEY) as lago:
        callback(lago, owed)
        callback(lago, owed[:3], seed=2)  # the callback sent three requests twice
        stray = dataclasses.replace(owed[0], end_user="nobody-we-know", request_id="stray")
        callback(lago, [stray], seed=3)
        summary = backfill(database, lago)
        assert summary.sent == 0
        assert {reason: count for reason, (count, _) in summary.unexplained.items()} == {
            "duplicate": 3,
            "no such request": 1,
        }
        assert len(lago.stored_events()) == len(owed) + 4  # nothing deleted or "fixed"


@pytest.mark.parametrize("fault", ["rate_limit", "server_error", "drop_connections"])
def test_lago_faults_are_ridden_out(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator, fault: str
) -> None:
    database, rows = day
    owed = billable(rows)
    callback(lago, owed[::3])
    getattr(lago.faults, fault)(3)
    summary = backfill(database, lago, sleep=lambda _: None)
    assert summary.sent == len(owed) - len(owed[::3])
    billed_once(lago, rows)


def test_a_per_page_cap_and_slow_answers_change_nothing(
    day: tuple[Database, list[SpendLog]],
) -> None:
    database, rows = day
    with LagoEmulator(api_key=KEY) as lago:
        owed = billable(rows)
        callback(lago, owed[1::2])
        lago.faults.per_page_cap(7)
        lago.faults.latency(0.01)
        summary = backfill(database, lago)
        assert summary.sent == len(owed) - len(owed[1::2])
        billed_once(lago, rows)


def test_a_run_that_fails_halfway_is_safe_to_run_again(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator
) -> None:
    database, rows = day
    owed = billable(rows)
    callback(lago, owed[:100])

    # Lago answers the first batches, then stops answering for good: the run fails...
    sent_batches = iter(range(2))

    def after_two_batches(request: httpx.Request) -> None:
        if request.method == "POST" and next(sent_batches, None) is None:
            lago.faults.drop_connections(10_000)

    transport = HookedTransport(after_two_batches)
    with pytest.raises(LagoUnavailable):
        backfill(database, lago, transport=transport, sleep=lambda _: None, retry=RetryPolicy(total_seconds=0.5),
                 concurrency=1)  # fmt: skip
    with connect(database) as connection:
        assert connection.execute("SELECT status FROM litellm_reconcile.runs").fetchall() == [
            ("failed",)
        ]
    landed = (
        len({(event["transaction_id"], event["timestamp"]) for event in lago.stored_events()}) - 100
    )
    with connect(database) as connection:
        recorded = connection.execute(
            "SELECT count(*) FROM litellm_reconcile.sent_events WHERE status = 'sent'"
        ).fetchone()
    assert recorded is not None
    assert 0 < landed == recorded[0]  # two batches' worth, each recorded as it landed
    # ...and, once Lago is back, running again bills every row exactly once.
    lago.faults.clear()
    again = backfill(database, lago)  # goes on with the failed run, from its last slice
    assert again.run_id == 1 and 0 < again.sent <= len(owed) - 100
    billed_once(lago, rows)
    with connect(database) as connection:
        assert connection.execute(
            "SELECT status, count(*) FROM litellm_reconcile.sent_events GROUP BY status"
        ).fetchall() == [("sent", len(owed) - 100)]


class HookedTransport(httpx.HTTPTransport):
    def __init__(self, before: Callable[[httpx.Request], None]) -> None:
        super().__init__()
        self.before = before

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.before(request)
        return super().handle_request(request)


@pytest.mark.parametrize("chunk_rows", [DEFAULT_CHUNK_ROWS, 2], indirect=True)
@pytest.mark.parametrize("kill_after", [20, 230])
def test_a_killed_run_is_safe_to_run_again(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator, kill_after: int
) -> None:
    """SIGKILL in the middle of sending, then the same command again: exactly once."""
    database, rows = day
    owed = billable(rows)
    lago.faults.latency(0.25)  # a few batches per second: time to kill it mid-way
    environment = {**os.environ, "DATABASE_URL": database.url(), "LAGO_API_BASE": lago.url,
                   "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    command = [sys.executable, "-m", "reconcile", "backfill", "--since", "2026-11-01",
               "--until", "2026-11-02", "--yes", "--chunk-rows", str(CHUNK_ROWS)]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while (
        len(lago.stored_events()) < kill_after or not committed_slices(database)
    ) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < len(lago.stored_events()) < len(owed)
    lago.faults.clear()
    done = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    billed_once(lago, rows)
    with connect(database) as connection:
        assert connection.execute(
            "SELECT DISTINCT status FROM litellm_reconcile.sent_events"
        ).fetchall() == [("sent",)]
        assert connection.execute(  # the same run, resumed from its last committed slice
            "SELECT status, jsonb_array_length(settings->'resumed') FROM litellm_reconcile.runs"
        ).fetchall() == [("succeeded", 1)]


def committed_slices(database: Database) -> int:
    """How many slices the ledger holds as committed (0 before the first one)."""
    with connect(database) as connection:
        found = connection.execute("SELECT count(*) FROM litellm_reconcile.run_slices").fetchone()
    return found[0] if found else 0


@contextlib.contextmanager
def run_under_way(database: Database, source_id: str) -> Iterator[None]:
    """Another run of the source (a backfill of another window) with a live worker; after the
    block its worker is gone (its lease expired)."""
    since = dt.datetime(2020, 1, 1, tzinfo=UTC)
    settings = job(window=Window(since, since + dt.timedelta(days=1)))
    with Ledger(database) as ledger:
        leases.enter(
            ledger, settings, source="elsewhere", source_id=source_id, recorded={}, now=since,
            worker="elsewhere:1:x", lease=dt.timedelta(hours=1),
        )  # fmt: skip
    yield
    with connect(database, autocommit=True) as connection:
        connection.execute("UPDATE litellm_reconcile.run_parts SET expires_at = now()")


def test_a_second_run_at_once_is_refused(day: tuple[Database, list[SpendLog]]) -> None:
    database, _ = day
    with (
        LagoEmulator(api_key=KEY) as lago,
        run_under_way(database, server_identity(database)),
        pytest.raises(RunLocked, match=r"another reconcile run .* is under way: run 1"),
    ):
        backfill(database, lago)


def test_windows_side_by_side_bill_their_edges_once(day: tuple[Database, list[SpendLog]]) -> None:
    database, rows = day
    owed = billable(rows)
    with LagoEmulator(api_key=KEY) as lago:
        callback(lago, [row for index, row in enumerate(owed) if index % 4])
        for since, until in ((0, 10), (10, 24)):  # the edge falls in the busiest hours
            edge = Window(
                WHOLE_DAY.since + dt.timedelta(hours=since),
                WHOLE_DAY.since + dt.timedelta(hours=until),
            )
            backfill(database, lago, job(window=edge))
        billed_once(lago, rows)


def test_a_missing_state_schema_says_to_migrate(litellm_db: Database) -> None:
    with (
        LagoEmulator(api_key=KEY) as lago,
        pytest.raises(ConfigError, match="run `reconcile migrate` once"),
    ):
        backfill(litellm_db, lago)


def test_dry_runs_and_limits_leave_missing_events_unsent(
    day: tuple[Database, list[SpendLog]],
) -> None:
    database, rows = day
    owed = billable(rows)
    with LagoEmulator(api_key=KEY) as lago:
        dry = backfill(database, lago, job(dry_run=True))
        assert (dry.missing, dry.sent, dry.unsent) == (len(owed), 0, len(owed))
        assert lago.stored_events() == []
        limited = backfill(database, lago, job(max_events=50))
        assert (limited.sent, limited.unsent) == (50, len(owed) - 50)
        rest = backfill(database, lago)
        assert (rest.sent, rest.unsent) == (len(owed) - 50, 0)
        billed_once(lago, rows)


def test_the_spend_log_database_is_only_read(
    day: tuple[Database, list[SpendLog]], reader: Database, new_database: Callable[[], Database]
) -> None:
    """A read-only role on LiteLLM's database, the ledger in a database of its own."""
    _, rows = day
    state = new_database()
    commands.migrate(commands.StateSettings(state))
    with LagoEmulator(api_key=KEY) as lago, LagoClient(lago.url, KEY) as client:
        summary = commands.backfill(
            reader, commands.LagoSettings(lago.url, KEY), commands.StateSettings(state), job(),
            client=client,
        )  # fmt: skip
        assert summary.sent == len(billable(rows))


@pytest.fixture
def reader(day: tuple[Database, list[SpendLog]]) -> Iterator[Database]:
    """The role of sql/readonly_role.sql, on LiteLLM's database."""
    database, _ = day
    role = f"reader_{random.randrange(10**8)}"
    script = (Path(__file__).resolve().parents[1] / "sql" / "readonly_role.sql").read_text()
    with connect(database, autocommit=True) as connection:
        connection.execute(script.replace("reconcile_reader", role).replace("<password>", "pw"))  # type: ignore[call-overload]
    try:
        yield database.replace(user=role)
    finally:
        with connect(database, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')  # type: ignore[call-overload]


def test_the_ledger_can_live_in_a_schema_the_reader_owns(
    day: tuple[Database, list[SpendLog]], reader: Database
) -> None:
    """The role may not create schemas; a DBA gives it one, and migrate and backfill work."""
    database, rows = day
    with pytest.raises(ConfigError, match=r"CREATE SCHEMA reader_ledger AUTHORIZATION"):
        commands.migrate(commands.StateSettings(reader, "reader_ledger"))
    with connect(database, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA reader_ledger AUTHORIZATION "{reader.params["user"]}"')  # type: ignore[call-overload]
    assert commands.migrate(commands.StateSettings(reader, "reader_ledger")).applied == [
        "001_runs_and_sent_events",
        "002_server_identity_and_coverage",
        "003_interrupted_runs",
        "004_run_slices",
        "005_run_parts",
    ]
    with LagoEmulator(api_key=KEY) as lago, LagoClient(lago.url, KEY) as client:
        summary = commands.backfill(
            reader, commands.LagoSettings(lago.url, KEY), commands.StateSettings(reader, "reader_ledger"), job(),
            client=client,
        )  # fmt: skip
        assert summary.sent == len(billable(rows))


def test_a_ledger_the_role_may_not_write_names_the_grant(
    day: tuple[Database, list[SpendLog]], reader: Database
) -> None:
    database, _ = day
    # `day` migrated the ledger as the owner: the reader may read the schema, not write it
    with connect(database, autocommit=True) as connection:
        grantee = sql.Identifier(reader.params["user"])
        connection.execute(sql.SQL("GRANT USAGE ON SCHEMA litellm_reconcile TO {}").format(grantee))
        connection.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA litellm_reconcile TO {}").format(grantee)
        )
    with (
        LagoEmulator(api_key=KEY) as lago,
        pytest.raises(ConfigError, match=r"refused to write reconcile's ledger .* grant this one"),
    ):
        commands.backfill(
            reader, commands.LagoSettings(lago.url, KEY), commands.StateSettings(reader), job()
        )


def test_a_dba_can_apply_the_printed_migration(day: tuple[Database, list[SpendLog]]) -> None:
    database, _ = day
    script = commands.migration_sql("billing_audit")
    command, environment = psql_command(database)
    state = commands.StateSettings(database, "billing_audit")
    assert commands.pending_migrations(state)
    subprocess.run(command, input=script, env=environment, text=True, check=True)
    # Alembic's version table says so: `migrate` finds nothing left to do
    assert commands.pending_migrations(state) == []
    assert commands.migrate(state).applied == []


def test_events_from_litellms_own_lago_callback_are_recognised(
    day: tuple[Database, list[SpendLog]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiteLLM's real LagoLogger (the `interop` extra) bills most rows live; we bill the rest."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    from litellm.integrations.lago import LagoLogger

    database, rows = day
    owed = billable(rows)
    live = [row for index, row in enumerate(owed) if index % 7]
    with LagoEmulator(api_key=KEY) as lago:
        for name, value in {
            "LAGO_API_BASE": lago.url,
            "LAGO_API_KEY": KEY,
            "LAGO_API_EVENT_CODE": CODE,
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("LAGO_API_CHARGE_BY", "end_user_id")

        async def proxy_logs_them() -> None:
            logger = LagoLogger()
            for index, row in enumerate(live):
                lago.set_clock(
                    (row.end + dt.timedelta(milliseconds=200 + index % 900)).replace(tzinfo=UTC)
                )
                usage = {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                         "total_tokens": row.total_tokens}  # fmt: skip
                response = litellm.ModelResponse(model=row.model, usage=usage)
                kwargs = {
                    "model": row.model, "response_cost": row.spend,
                    "litellm_params": {"proxy_server_request": {"body": {"user": row.end_user}},
                                       "metadata": {"user_api_key_team_id": row.team_id}},
                }  # fmt: skip
                await logger.async_log_success_event(kwargs, response, None, None)

        import asyncio

        asyncio.run(proxy_logs_them())
        lago.set_clock(dt.datetime.now(UTC))
        summary = backfill(database, lago)
        assert (summary.matched_by_fingerprint, summary.sent) == (len(live), len(owed) - len(live))
        assert summary.unexplained == {}
        billed_once(lago, rows)
