"""The job's guards over real Postgres and the emulator: the nightly coverage, rows too recent to
send, one identity per database whatever the URL, the audit trail when sending fails, ids that
must agree on the subscription, and token counts under either name."""

import dataclasses
import datetime as dt
import decimal
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from conftest import DAY
from test_cli import run
from test_reconcile_e2e import (
    KEY,
    HookedTransport,
    billable,
    billed_once,
    callback,
    run_under_way,
)

from reconcile import commands
from reconcile.errors import ConfigError, LagoUnavailable, RunLocked
from reconcile.lago.client import LagoClient
from reconcile.lago.retry import RetryPolicy
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect, server_identity
from reconcile.results import RunSummary
from reconcile.settings import ChargeBy, JobSettings
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.window import UTC, Window

CODE = "openai_tokens"
MIDNIGHT = dt.datetime.combine(DAY, dt.time(), tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def two_days(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> list[SpendLog]:
    rows = [*factory.day(DAY, 150), *factory.day(DAY + dt.timedelta(days=1), 150)]
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    return rows


def job(window: Window, **changes: object) -> JobSettings:
    settings = JobSettings(
        mode="backfill", window=window, charge_by=ChargeBy.END_USER_ID, code=CODE
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def backfill(
    database: Database, lago: LagoEmulator, settings: JobSettings, **more: object
) -> RunSummary:
    with LagoClient(lago.url, KEY) as client:
        return commands.backfill(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            settings, client=client, **more,  # type: ignore[arg-type]
        )  # fmt: skip


def nightly(
    database: Database, lago: LagoEmulator, now: dt.datetime, **more: object
) -> RunSummary | None:
    with LagoClient(lago.url, KEY) as client:
        return commands.run(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            job(Window(MIDNIGHT, MIDNIGHT + HOUR), **more), commands.Schedule(first_since=MIDNIGHT),
            now=now, client=client,
        )  # fmt: skip


def test_the_nightly_run_continues_from_its_own_coverage_only(
    litellm_db: Database, two_days: list[SpendLog], lago: LagoEmulator
) -> None:
    """A backfill of one customer's second day, a dry run, a --customer run: none moves the
    nightly job on; day one stays its to bill, and it does."""
    second_day = Window(MIDNIGHT + 24 * HOUR, MIDNIGHT + 48 * HOUR)
    customer = billable(two_days)[-1].end_user
    later = MIDNIGHT + 72 * HOUR
    backfill(litellm_db, lago, job(second_day, customers=frozenset({customer})), now=later)
    backfill(litellm_db, lago, job(second_day, dry_run=True), now=later)
    dry = nightly(litellm_db, lago, later, dry_run=True)
    assert dry is not None
    assert dry.settings.window.since == MIDNIGHT  # the first nightly run: from --since
    summary = nightly(litellm_db, lago, later)
    assert summary is not None
    assert summary.settings.window.since == MIDNIGHT
    billed_once(lago, two_days)
    again = nightly(litellm_db, lago, later + HOUR)
    assert again is not None
    assert again.settings.window.since == later - dt.timedelta(minutes=15) - 24 * HOUR
    assert again.sent == 0


def test_a_window_reaching_past_the_settle_point_is_refused(
    litellm_db: Database, two_days: list[SpendLog], lago: LagoEmulator
) -> None:
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    future = run(
        ["backfill", "--since", "2026-11-01", "--until", "2030-01-01", "--dry-run"], env=env
    )
    assert future.exit_code == 2
    assert "--until 2030-01-01T00:00:00Z is after now minus --settle" in future.stderr
    with pytest.raises(ConfigError, match="after now minus --settle"):
        backfill(litellm_db, lago, job(Window(MIDNIGHT, MIDNIGHT + HOUR)), now=MIDNIGHT + HOUR)


def test_rows_whose_events_may_still_arrive_are_held_back(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    """A request that ended 30 s before the settle point: its callback event may still come,
    so it is not sent (exit 3 from the CLI); once it came, a later run finds it billed."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    settle_point = now - dt.timedelta(minutes=15)
    old = factory.success(settle_point.replace(tzinfo=None) - 2 * HOUR)
    recent = factory.success(settle_point.replace(tzinfo=None) - dt.timedelta(minutes=1),
                             end=settle_point.replace(tzinfo=None) - dt.timedelta(seconds=30))  # fmt: skip
    insert(old, recent)
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    assert run(["migrate"], env=env).exit_code == 0
    since = (settle_point - 3 * HOUR).isoformat()
    first = run(["backfill", "--since", since, "--until", settle_point.isoformat()], env=env)
    assert first.exit_code == 3, first.stderr
    assert "1 missing event(s) held back" in first.stderr
    assert [event["properties"]["litellm_request_id"] for event in lago.stored_events()] == [
        old.request_id
    ]
    callback(lago, [recent])  # LiteLLM's callback delivers it after all
    window = Window(settle_point - 3 * HOUR, settle_point)
    later = backfill(litellm_db, lago, job(window), now=now + HOUR)
    assert (later.missing, later.sent, later.matched_by_fingerprint) == (0, 0, 1)
    billed_once(lago, [old, recent])


@pytest.fixture
def reader(litellm_db: Database) -> Iterator[Database]:
    """The role of sql/readonly_role.sql, with a ledger schema of its own."""
    role = f"reader_{random.randrange(10**8)}"
    script = (Path(__file__).resolve().parents[1] / "sql" / "readonly_role.sql").read_text()
    with connect(litellm_db, autocommit=True) as connection:
        connection.execute(script.replace("reconcile_reader", role).replace("<password>", "pw"))  # type: ignore[call-overload]
        connection.execute(f'CREATE SCHEMA litellm_reconcile AUTHORIZATION "{role}"')  # type: ignore[call-overload]
    try:
        yield litellm_db.replace(user=role, password="pw")
    finally:
        with connect(litellm_db, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')  # type: ignore[call-overload]


def spellings(database: Database) -> list[Database]:
    """One database, three ways to write its URL."""
    return [
        database.replace(host="127.0.0.1"),
        database.replace(host="localhost", sslmode="disable"),
        database.replace(host="localhost", connect_timeout="7", application_name="cron"),
    ]


@pytest.mark.parametrize("identifier", ["readable", "revoked"])
def test_one_lock_and_one_history_per_database_whatever_the_url(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory,
    reader: Database, lago: LagoEmulator, identifier: str,
) -> None:  # fmt: skip
    """Spelled three ways, by the read-only role, with the cluster's identifier readable or not
    (then the server's own address, loopback as `local`): one identity, one lock, one history."""
    if identifier == "revoked":
        with connect(litellm_db, autocommit=True) as connection:
            connection.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    try:
        urls = spellings(reader)
        identities = {server_identity(url) for url in urls}
        assert len(identities) == 1
        (identity,) = identities
        assert identity.startswith("cluster:" if identifier == "readable" else "server:local:")
        insert(*factory.day(DAY, 60))
        commands.migrate(commands.StateSettings(urls[0]))
        with run_under_way(litellm_db, identity), pytest.raises(RunLocked):
            nightly(urls[1], lago, MIDNIGHT + 26 * HOUR)
        first = nightly(urls[1], lago, MIDNIGHT + 26 * HOUR)
        second = nightly(urls[2], lago, MIDNIGHT + 27 * HOUR)
        assert first is not None and second is not None
        assert second.settings.window.since == first.settings.window.until - 24 * HOUR
    finally:
        if identifier == "revoked":
            with connect(litellm_db, autocommit=True) as connection:
                connection.execute("GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC")


def test_what_was_delivered_before_a_failure_is_in_the_ledger(
    litellm_db: Database,
    two_days: list[SpendLog],
    lago: LagoEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lago stops answering after two batches: their events are recorded `sent` at once, and
    the run `failed`, with the original error."""
    batches = iter(range(2))

    def after_two_batches(request: httpx.Request) -> None:
        if request.method == "POST" and next(batches, None) is None:
            lago.faults.drop_connections(10_000)

    failing_backfill(litellm_db, lago, after_two_batches)
    with connect(litellm_db) as connection:
        statuses = dict(connection.execute(
            "SELECT status, count(*) FROM litellm_reconcile.sent_events GROUP BY 1").fetchall())  # fmt: skip
        ((status, error, counts),) = connection.execute(
            "SELECT status, error, counts FROM litellm_reconcile.runs"
        ).fetchall()
    delivered = statuses["sent"]  # two batches: a slice's events, at most 100 each
    assert 0 < delivered <= 200
    assert (status, counts["sent"], counts["unsent"]) == (
        "failed", delivered, counts["missing"] - delivered,
    )  # fmt: skip
    assert Decimal(counts["sent_spend"]) > 0
    assert "LagoUnavailable" in error
    assert (
        f"{delivered} event(s) were delivered (and 0 found already in Lago) before the error"
        in (caplog.text)
    )


def test_a_dead_ledger_does_not_hide_the_error_that_stopped_the_run(
    litellm_db: Database,
    two_days: list[SpendLog],
    lago: LagoEmulator,
    pg_admin: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ledger's connection dies while Lago fails: the user still sees Lago's error."""
    killed = iter(range(1))

    def kill_ledger_then_fail(request: httpx.Request) -> None:
        if request.method == "POST" and next(killed, None) is not None:
            with connect(pg_admin, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = 'reconcile'", (litellm_db.name,),
                )  # fmt: skip
            lago.faults.drop_connections(10_000)

    failing_backfill(litellm_db, lago, kill_ledger_then_fail)
    assert "the ledger could not record run" in caplog.text
    assert "connection to reconcile's ledger broke" in caplog.text


def failing_backfill(
    database: Database, lago: LagoEmulator, hook: Callable[[httpx.Request], None]
) -> None:
    """Two days' backfill through a transport that calls `hook` first: it must fail with
    Lago's error, whatever else broke."""
    client = LagoClient(lago.url, KEY, transport=HookedTransport(hook), sleep=lambda _: None,
                        retry=RetryPolicy(total_seconds=0.5), concurrency=1)  # fmt: skip
    with client, pytest.raises(LagoUnavailable):
        commands.backfill(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            job(Window(MIDNIGHT, MIDNIGHT + 48 * HOUR)), client=client, now=MIDNIGHT + 72 * HOUR,
        )  # fmt: skip


def test_our_events_under_other_subscriptions_bill_nothing_of_this_charge_by(
    litellm_db: Database, two_days: list[SpendLog], lago: LagoEmulator
) -> None:
    """Billed per end user first, then per team: the end users' events carry the same ids,
    but not the teams' subscriptions, so every team still gets its own events."""
    first_day = Window(MIDNIGHT, MIDNIGHT + 24 * HOUR)
    later = MIDNIGHT + 72 * HOUR
    by_user = backfill(litellm_db, lago, job(first_day), now=later)
    by_team = backfill(litellm_db, lago, job(first_day, charge_by=ChargeBy.TEAM_ID), now=later)
    teams = billable(two_days[:150], ChargeBy.TEAM_ID)
    assert by_user.sent == len(billable(two_days[:150]))
    assert (by_team.sent, by_team.matched_by_id) == (len(teams), 0)
    # Listed beside the teams' events, the end users' are ours under other subscriptions.
    (count, _) = by_team.unexplained["property mismatch"]
    assert count == by_user.sent


def test_token_counts_under_their_other_names_are_the_same_request(
    litellm_db: Database, two_days: list[SpendLog], lago: LagoEmulator
) -> None:
    """An event naming its tokens input/output (as reconcile's own do) that repeats a request
    the callback already billed is a duplicate, not a property mismatch."""
    row = billable(two_days[:150])[0]
    callback(lago, [row])
    properties = {"model": row.model, "response_cost": str(row.spend),
                  "input_tokens": row.prompt_tokens, "output_tokens": row.completion_tokens}  # fmt: skip
    lago.set_clock(row.end.replace(tzinfo=UTC) + dt.timedelta(seconds=2))
    with httpx.Client(base_url=lago.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        http.post("/api/v1/events", json={"event": {
            "transaction_id": "copy-1", "code": CODE, "external_subscription_id": row.end_user,
            "properties": properties}}).raise_for_status()  # fmt: skip
    summary = backfill(litellm_db, lago, job(Window(MIDNIGHT, MIDNIGHT + 24 * HOUR)),
                       now=MIDNIGHT + 72 * HOUR)  # fmt: skip
    assert {reason: count for reason, (count, _) in summary.unexplained.items()} == {"duplicate": 1}


def test_the_nightly_run_leaves_the_last_minutes_to_the_next_night_and_exits_0(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    """From the command line, with the real clock: a request that ended a minute before the
    settle point is held back, the run succeeds (exit 0), and its coverage stops before it."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    settle_point = (now - dt.timedelta(minutes=15)).replace(tzinfo=None)
    old = factory.success(settle_point - 2 * HOUR)
    recent = factory.success(settle_point - dt.timedelta(minutes=3),
                             end=settle_point - dt.timedelta(minutes=1))  # fmt: skip
    insert(old, recent)
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    assert run(["migrate"], env=env).exit_code == 0
    nightly_run = run(["run", "--since", (now - 3 * HOUR).isoformat()], env=env)
    assert nightly_run.exit_code == 0, nightly_run.stderr
    assert "1 missing event(s) held back" in nightly_run.stderr
    assert "the next nightly run takes them" in nightly_run.stderr
    with connect(litellm_db) as connection:
        (covered,) = connection.execute(
            "SELECT covered_until FROM litellm_reconcile.runs WHERE status = 'succeeded'"
        ).fetchone() or (None,)
    assert covered == recent.start.replace(tzinfo=UTC)


def test_a_backfill_of_one_customer_gives_its_rows_the_ids_a_full_one_does(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    """Two customers' requests share a call id and a start millisecond (a client reusing its
    x-litellm-call-id): which keeps the call id depends on both rows, so a --customer run must
    compute ids over every row, or its events get ids a full run does not recognise."""
    start = MIDNIGHT.replace(tzinfo=None) + 10 * HOUR
    first = factory.success(start, end_user="cust-a", litellm_call_id="reused",
                            created_at=start + dt.timedelta(seconds=1))  # fmt: skip
    second = factory.success(start, end_user="cust-b", litellm_call_id="reused",
                             created_at=start + dt.timedelta(seconds=2))  # fmt: skip
    insert(first, second)
    commands.migrate(commands.StateSettings(litellm_db))
    day, later = Window(MIDNIGHT, MIDNIGHT + 24 * HOUR), MIDNIGHT + 72 * HOUR
    only_b = backfill(litellm_db, lago, job(day, customers=frozenset({"cust-b"})), now=later)
    everyone = backfill(litellm_db, lago, job(day), now=later)
    assert (only_b.sent, everyone.sent, everyone.matched_by_id) == (1, 1, 1)
    billed_once(lago, [first, second])


def test_sums_of_any_doubles_are_exact_from_end_to_end(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    """1e30 + 0.5 + the largest double: 310 digits no default decimal context keeps."""
    start = MIDNIGHT.replace(tzinfo=None) + 10 * HOUR
    costs = [1e30, 0.5, 1.7976931348623157e308]
    insert(*(factory.success(start + index * HOUR, end_user="cust-x", spend=cost)
             for index, cost in enumerate(costs)))  # fmt: skip
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    window = ["--since", "2026-11-01", "--until", "2026-11-02"]
    assert run(["migrate"], env=env).exit_code == 0
    sent = run(["backfill", *window], env=env)
    assert sent.exit_code == 0, sent.stderr
    report = run(["report", *window, "--format", "csv"], env=env)
    assert report.exit_code == 0, report.stderr
    with decimal.localcontext(prec=1000):
        exact = sum((Decimal(repr(cost)) for cost in costs), Decimal(0))
    total = report.stdout.splitlines()[-1].split(",")
    assert Decimal(total[6]) == exact  # spend
    assert format(exact, "f") in sent.stderr.replace(",", "")


def test_a_row_inserted_late_with_an_earlier_insert_time_takes_no_id_already_billed(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory, lago: LagoEmulator
) -> None:
    """B is billed alone in its millisecond, with the call identity; A, with the same call id and
    millisecond and an earlier insert time (a transaction that committed late), then takes the
    call identity and B the request one: B's event still bills B, and A gets its own."""
    start = MIDNIGHT.replace(tzinfo=None) + 10 * HOUR
    later_row = factory.success(start, end_user="cust-b", litellm_call_id="reused",
                                created_at=start + dt.timedelta(seconds=5))  # fmt: skip
    early_row = factory.success(start, end_user="cust-a", litellm_call_id="reused",
                                created_at=start + dt.timedelta(seconds=4))  # fmt: skip
    commands.migrate(commands.StateSettings(litellm_db))
    day, later = Window(MIDNIGHT, MIDNIGHT + 24 * HOUR), MIDNIGHT + 72 * HOUR
    insert(later_row)
    assert backfill(litellm_db, lago, job(day), now=later).sent == 1
    insert(early_row)
    again = backfill(litellm_db, lago, job(day), now=later)
    assert (again.sent, again.matched_by_id, again.unexplained) == (1, 1, {})
    billed_once(lago, [later_row, early_row])


def test_a_first_nightly_run_that_failed_is_where_the_next_one_starts(
    litellm_db: Database, two_days: list[SpendLog], lago: LagoEmulator
) -> None:
    """The operator's first run (--since two days back) fails; cron's next run, without --since,
    starts there too, not a day back: nothing is skipped."""
    lago.faults.server_error(10_000)
    failing = LagoClient(lago.url, KEY, sleep=lambda _: None, retry=RetryPolicy(total_seconds=0.2))
    with failing, pytest.raises(LagoUnavailable):
        commands.run(
            litellm_db, commands.LagoSettings(lago.url, KEY), commands.StateSettings(litellm_db),
            job(Window(MIDNIGHT, MIDNIGHT + HOUR)), commands.Schedule(first_since=MIDNIGHT),
            now=MIDNIGHT + 50 * HOUR, client=failing,
        )  # fmt: skip
    lago.faults.clear()
    with LagoClient(lago.url, KEY) as client:
        cron = commands.run(
            litellm_db, commands.LagoSettings(lago.url, KEY), commands.StateSettings(litellm_db),
            job(Window(MIDNIGHT, MIDNIGHT + HOUR)), commands.Schedule(), now=MIDNIGHT + 51 * HOUR,
            client=client,
        )  # fmt: skip
    assert cron is not None
    assert cron.settings.window.since == MIDNIGHT
    billed_once(lago, two_days)


def test_a_request_longer_than_the_longest_considered_is_warned_about(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    lago: LagoEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start = MIDNIGHT.replace(tzinfo=None) + 10 * HOUR
    insert(factory.success(start, end=start + 7 * HOUR))
    commands.migrate(commands.StateSettings(litellm_db))
    backfill(
        litellm_db, lago, job(Window(MIDNIGHT, MIDNIGHT + 24 * HOUR)), now=MIDNIGHT + 72 * HOUR
    )
    assert "1 request(s) lasted longer than --longest-request (6:00:00; the longest: 7.0 h)" in (
        caplog.text
    )


def test_a_lookback_shorter_than_the_longest_request_is_refused(litellm_db: Database) -> None:
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": "http://127.0.0.1:9",
           "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    refused = run(["run", "--lookback", "1h"], env=env)
    assert refused.exit_code == 2
    assert "--lookback 1h is shorter than --longest-request 6h" in refused.stderr


def test_a_schema_name_cannot_carry_sql(litellm_db: Database) -> None:
    """The name is written into the migration's comments: a newline would end one."""
    bad = "x\nCREATE TABLE public.pwned (i int);--"
    refused = run(["migrate", "--state-schema", bad], env={"DATABASE_URL": litellm_db.url()})
    assert refused.exit_code == 2
    assert "contains control characters" in refused.stderr
    with connect(litellm_db) as connection:
        assert connection.execute("SELECT to_regclass('public.pwned')").fetchone() == (None,)
