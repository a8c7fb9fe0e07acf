"""Reading spend logs from LiteLLM's real schema: classes, windows, modes, schemas, failures."""

import dataclasses
import datetime as dt
import io
import itertools
import json
import math
import types
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import cast

import psycopg
import pytest
from conftest import DAY, at
from psycopg import sql

from reconcile import commands
from reconcile.attribute import RowClass
from reconcile.errors import ConfigError, SourceError
from reconcile.postgres import Database, connect, parse_database_url
from reconcile.results import EventsSummary
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import _copy_out, open_snapshot, read_window
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.testing.litellm_schema import apply_migrations, migration_files
from reconcile.window import Window, parse_instant

ROOT = Path(__file__).resolve().parents[1]


def window(since: str = "2026-11-01", until: str = "2026-11-02") -> Window:
    return Window(parse_instant(since, option="--since"), parse_instant(until, option="--until"))


def run_events(
    database: Database,
    *,
    charge_by: ChargeBy = ChargeBy.END_USER_ID,
    span: Window | None = None,
    chunk_rows: int = 20_000,
) -> tuple[EventsSummary, list[dict[str, object]]]:
    sink = io.BytesIO()
    summary = commands.events(
        database,
        window=span or window(),
        charge_by=charge_by,
        code="tokens",
        sink=sink,
        chunk_rows=chunk_rows,
    )
    return summary, [json.loads(line) for line in sink.getvalue().splitlines()]


ROW_CASES = {
    "success with a customer": ({}, RowClass.BILLABLE),
    "no status (LiteLLM before May 2025)": ({"status": None}, RowClass.BILLABLE),
    "zero-cost cache hit": ({"spend": 0.0, "cache_hit": "True"}, RowClass.BILLABLE),
    "tiny cost": ({"spend": 1.5e-05}, RowClass.BILLABLE),
    "failure without cost": ({"status": "failure", "spend": 0.0}, RowClass.FAILED),
    "failure with a partial cost": ({"status": "failure", "spend": 0.25}, RowClass.FAILED),
    "failure without a customer": ({"status": "failure", "end_user": ""}, RowClass.FAILED),
    "unknown status": ({"status": "pending"}, RowClass.FAILED),
    "customer written as ''": ({"end_user": ""}, RowClass.UNATTRIBUTABLE),
    "customer written as NULL": ({"end_user": None}, RowClass.UNATTRIBUTABLE),
    "cost is NaN": ({"spend": float("nan")}, RowClass.INVALID_COST),
    "cost is infinite": ({"spend": float("inf")}, RowClass.INVALID_COST),
}


@pytest.mark.parametrize(("overrides", "expected"), list(ROW_CASES.values()), ids=list(ROW_CASES))
def test_every_row_gets_exactly_one_class(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory,
    overrides: dict[str, object], expected: RowClass,
) -> None:  # fmt: skip
    row = dataclasses.replace(factory.success(at(3600)), **{"end_user": "cust_1", **overrides})  # type: ignore[arg-type]
    other = factory.success(at(7200), end_user="cust_2")
    insert(row, other)
    summary, events = run_events(litellm_db)
    assert summary.tally.rows == 2
    assert summary.tally[expected].rows == (2 if expected is RowClass.BILLABLE else 1)
    billed = {event["properties"]["litellm_request_id"] for event in events}  # type: ignore[index]
    assert (row.request_id in billed) == (expected is RowClass.BILLABLE)
    assert other.request_id in billed
    if expected is RowClass.FAILED and row.spend:
        assert summary.tally[RowClass.FAILED].rows_with_spend == 1
        assert summary.tally[RowClass.FAILED].spend == Decimal(repr(row.spend))


def test_a_row_without_status_is_billed_whatever_its_age(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    # LiteLLM writes `status` only since May 2025; a proxy still on an older release writes
    # none today. LiteLLM billed such a row (its callback runs on success only), so do we.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    old = factory.success(dt.datetime(2025, 4, 30, 12), end_user="cust_1", status=None)
    new = factory.success(this_month, end_user="cust_1", status=None)
    insert(old, new)
    summary, events = run_events(
        litellm_db, span=Window(dt.datetime(2025, 4, 1, tzinfo=dt.UTC), now.replace(tzinfo=dt.UTC))
    )
    assert summary.tally[RowClass.BILLABLE].rows == 2
    billed = {event["properties"]["litellm_request_id"] for event in events}  # type: ignore[index]
    assert billed == {old.request_id, new.request_id}


def test_a_realistic_day_is_classified_and_billed_row_for_row(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows = list(factory.day(DAY, 3000))
    insert(*rows)
    summary, events = run_events(litellm_db)
    billable = [
        row for row in rows
        if row.status in ("success", None) and row.end_user and row.spend == row.spend
    ]  # fmt: skip
    assert summary.tally.rows == len(rows)
    assert summary.events == len(events) == len(billable)
    assert sorted(event["properties"]["litellm_request_id"] for event in events) == sorted(  # type: ignore[index]
        row.request_id for row in billable
    )
    assert len({event["transaction_id"] for event in events}) == len(events)
    by_id = {row.request_id: row for row in billable}
    for event in events:
        row = by_id[event["properties"]["litellm_request_id"]]  # type: ignore[index]
        assert event["external_subscription_id"] == row.end_user
        assert float(event["properties"]["response_cost"]) == row.spend  # type: ignore[index]
        assert event["properties"]["total_tokens"] == row.total_tokens  # type: ignore[index]
        end_ms = round((row.end - dt_epoch()).total_seconds() * 1000)
        assert event["timestamp"] == f"{end_ms // 1000}.{end_ms % 1000:03d}"
    assert float(summary.tally.spend) == pytest.approx(
        math.fsum(row.spend for row in rows), rel=1e-15
    )


def dt_epoch():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime(1970, 1, 1)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-11-01T01:00:00", "2026-11-01T02:00:00", ["at since", "just before until"]),
        (
            "2026-11-01T03:00:00+02:00",
            "2026-11-01T04:00:00+02:00",
            ["at since", "just before until"],
        ),
        (
            "2026-10-31T20:00:00-05:00",
            "2026-10-31T21:00:00-05:00",
            ["at since", "just before until"],
        ),
        ("2026-11-01T00:59:59.999", "2026-11-01T01:00:00", ["just before since"]),
        ("2026-11-01T02:00:00", "2026-11-01T03:00:00", ["at until"]),
    ],
)
def test_the_window_is_half_open_on_start_time_in_utc(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory,
    since: str, until: str, expected: list[str],
) -> None:  # fmt: skip
    labelled = {
        "just before since": at(3600 - 0.001),
        "at since": at(3600),
        "just before until": at(7200 - 0.001),
        "at until": at(7200),
    }
    rows = {label: factory.success(start, end_user=label) for label, start in labelled.items()}
    insert(*rows.values())
    _, events = run_events(litellm_db, span=window(since, until))
    assert sorted(str(event["external_subscription_id"]) for event in events) == sorted(expected)


@pytest.mark.parametrize(
    ("mode", "billed_to"),
    [
        (ChargeBy.END_USER_ID, "the-customer"),
        (ChargeBy.USER_ID, "someone@example.com"),
        (ChargeBy.TEAM_ID, "team-ml"),
    ],
)
def test_each_charge_by_mode_bills_its_own_column(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    mode: ChargeBy,
    billed_to: str,
) -> None:
    insert(
        factory.success(
            at(60), end_user="the-customer", user="someone@example.com", team_id="team-ml"
        ),
        factory.success(at(61), end_user="", user="", team_id=None),
    )
    summary, events = run_events(litellm_db, charge_by=mode)
    assert [event["external_subscription_id"] for event in events] == [billed_to]
    assert summary.tally[RowClass.UNATTRIBUTABLE].rows == 1


def test_output_is_identical_whatever_the_chunk_size(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows = list(factory.day(DAY, 1500))
    # Crowd many rows, some sharing a client-chosen call id, into few milliseconds.
    crowded = [
        factory.success(
            at(100 + index // 40), litellm_call_id=f"shared-{index % 3}", metadata_call_id=None
        )
        for index in range(400)
    ]
    insert(*rows, *crowded)
    outputs = []
    for chunk_rows in (100, 20_000):
        sink = io.BytesIO()
        commands.events(
            litellm_db,
            window=window(),
            charge_by=ChargeBy.END_USER_ID,
            code="t",
            sink=sink,
            chunk_rows=chunk_rows,
        )
        outputs.append(sink.getvalue())
    assert outputs[0] == outputs[1]
    ids = [json.loads(line)["transaction_id"] for line in outputs[0].splitlines()]
    assert len(ids) == len(set(ids))


def test_chunks_are_bounded_and_never_split_a_millisecond(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    insert(*[factory.success(at(10 + index // 7)) for index in range(1000)])
    with open_snapshot(litellm_db) as connection:
        chunks = list(
            read_window(connection, litellm_db, ChargeBy.END_USER_ID, window(), chunk_rows=100)
        )
    assert sum(chunk.num_rows for chunk in chunks) == 1000
    assert all(chunk.num_rows <= 100 + 7 for chunk in chunks)
    starts = [set(chunk.column("start_ms").to_pylist()) for chunk in chunks]
    for earlier, later in itertools.pairwise(starts):
        assert not earlier & later


def test_call_ids_come_from_the_column_or_from_metadata(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    column = factory.success(at(1), litellm_call_id="in-column", metadata_call_id="ignored")
    metadata = factory.success(at(2), litellm_call_id=None, metadata_call_id="in-metadata")
    blank = factory.success(at(3), litellm_call_id="", metadata_call_id="")
    insert(column, metadata, blank)
    with open_snapshot(litellm_db) as connection:
        (chunk,) = read_window(connection, litellm_db, ChargeBy.END_USER_ID, window())
    assert chunk.column("call_id").to_pylist() == ["in-column", "in-metadata", None]


def test_the_reader_holds_a_read_only_snapshot(litellm_db: Database) -> None:
    with open_snapshot(litellm_db) as connection:
        connection.execute("SELECT 1")
        level, read_only = connection.execute(
            "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
        ).fetchone()  # type: ignore[misc]
        assert (level, read_only) == ("repeatable read", "on")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute('DELETE FROM "LiteLLM_SpendLogs"')


def test_a_database_without_the_table_is_named_with_the_fix(pg_admin: Database) -> None:
    with pytest.raises(ConfigError, match='has no "LiteLLM_SpendLogs" table') as raised:
        run_events(pg_admin)
    assert "point it at the LiteLLM proxy's database" in str(raised.value)


def test_prisma_schema_parameter_selects_the_schema(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    insert(factory.success(at(5)))
    with connect(litellm_db, autocommit=True) as connection:
        connection.execute(
            'CREATE SCHEMA litellm; ALTER TABLE "LiteLLM_SpendLogs" SET SCHEMA litellm'
        )
    with pytest.raises(ConfigError, match="add \\?schema=<name>"):
        run_events(litellm_db)
    url = litellm_db.url()
    with_schema = parse_database_url(url + ("&" if "?" in url else "?") + "schema=litellm")
    summary, events = run_events(with_schema)
    assert summary.events == len(events) == 1


def test_a_table_from_before_may_2025_is_read_too(
    pg_admin: Database, factory: SpendLogFactory
) -> None:
    """No status, created_at or litellm_call_id columns: every row succeeded, call ids in metadata."""
    name = f"reconcile_test_{uuid.uuid4().hex[:12]}"
    with connect(pg_admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    old = pg_admin.replace(dbname=name)
    try:
        apply_migrations(old, migration_files(before="20250508072103"))
        with connect(old) as connection:
            columns = {row[0] for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'LiteLLM_SpendLogs'"
            )}  # fmt: skip
            assert not {"status", "created_at", "litellm_call_id"} & columns
            for index, end_user in enumerate(["old-customer", ""]):
                connection.execute(
                    'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, spend, prompt_tokens,'
                    ' completion_tokens, total_tokens, "startTime", "endTime", model, end_user, metadata)'
                    " VALUES (%s, 'acompletion', 0.002, 10, 5, 15, %s, %s, 'gpt-4o', %s, %s)",
                    (f"chatcmpl-old-{index}", at(10 + index), at(11 + index), end_user,
                     json.dumps({"litellm_call_id": f"call-{index}"})),
                )  # fmt: skip
            connection.commit()
        summary, events = run_events(old)
        assert summary.tally[RowClass.BILLABLE].rows == 1
        assert summary.tally[RowClass.UNATTRIBUTABLE].rows == 1
        assert [event["properties"]["litellm_request_id"] for event in events] == ["chatcmpl-old-0"]  # type: ignore[index]
    finally:
        with connect(pg_admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_a_partitioned_spend_log_table_reads_the_same(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows = list(factory.day(DAY, 500))
    insert(*rows)
    _, plain = run_events(litellm_db)
    with connect(litellm_db, autocommit=True) as connection:
        connection.execute(
            'ALTER TABLE "LiteLLM_SpendLogs" RENAME TO spend_logs_plain;'
            'CREATE TABLE "LiteLLM_SpendLogs" (LIKE spend_logs_plain INCLUDING DEFAULTS) PARTITION BY RANGE ("startTime");'
            "CREATE TABLE spend_logs_2026_11_01 PARTITION OF \"LiteLLM_SpendLogs\" FOR VALUES FROM ('2026-11-01') TO ('2026-11-02');"
            'CREATE TABLE spend_logs_rest PARTITION OF "LiteLLM_SpendLogs" DEFAULT;'
            'INSERT INTO "LiteLLM_SpendLogs" SELECT * FROM spend_logs_plain;'
        )
    _, partitioned = run_events(litellm_db)
    assert partitioned == plain


def test_a_read_only_role_from_sql_readonly_role_is_enough(
    pg_admin: Database, litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    insert(factory.success(at(5)))
    role = f"reader_{uuid.uuid4().hex[:8]}"
    script = (ROOT / "sql" / "readonly_role.sql").read_text().replace("reconcile_reader", role)
    script = script.replace("<password>", uuid.uuid4().hex)
    with connect(litellm_db, autocommit=True) as connection:
        connection.execute(script)  # type: ignore[call-overload]
    reader = litellm_db.replace(user=role)
    try:
        summary, events = run_events(reader)
        assert summary.events == len(events) == 1
        with connect(litellm_db, autocommit=True) as connection:
            connection.execute(
                sql.SQL('REVOKE SELECT ON "LiteLLM_SpendLogs" FROM {}').format(sql.Identifier(role))
            )
        with pytest.raises(ConfigError, match="grant the reader SELECT") as raised:
            run_events(reader)
        assert "sql/readonly_role.sql" in str(raised.value)
    finally:
        with connect(litellm_db, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role))
            )


def test_a_statement_timeout_is_reported_with_the_fix(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    insert(*factory.day(DAY, 3000))
    hurried = litellm_db.with_timeouts(
        connect=dt.timedelta(seconds=10), statement=dt.timedelta(milliseconds=1)
    )
    with pytest.raises(SourceError, match="raise --db-statement-timeout") as raised:
        run_events(hurried)
    assert not isinstance(raised.value, ConfigError)


def test_a_statement_timeout_the_url_sets_is_raised_there(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    """--db-statement-timeout does not apply then: the fix is in the URL's options."""
    insert(*factory.day(DAY, 3000))
    hurried = parse_database_url(litellm_db.replace(options="-c statement_timeout=1").url())
    with pytest.raises(SourceError, match=r"raise statement_timeout in .*options") as raised:
        run_events(hurried)
    assert "--db-statement-timeout does not apply" in str(raised.value)


def test_no_rows_is_not_an_error(litellm_db: Database) -> None:
    summary, events = run_events(litellm_db)
    assert (summary.tally.rows, summary.events, events) == (0, 0, [])


def test_nulls_where_litellm_writes_none_keep_every_event(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    # LiteLLM declares these NOT NULL; a table made by an older release or altered by hand may
    # still hold NULLs. An unknown model or token count is sent as null (as LiteLLM's callback
    # sends an unknown model); an unknown cost is no cost an event can carry.
    rows = [factory.success(at(60 * index), end_user="cust_1") for index in range(4)]
    insert(*rows)
    nulled = {"model": rows[0], "prompt_tokens": rows[1], "total_tokens": rows[2], "spend": rows[3]}
    with connect(litellm_db) as connection:
        for column, row in nulled.items():
            table, name = sql.Identifier("LiteLLM_SpendLogs"), sql.Identifier(column)
            connection.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(table, name)
            )
            connection.execute(
                sql.SQL("UPDATE {} SET {} = NULL WHERE request_id = %s").format(table, name),
                [row.request_id],
            )
        connection.commit()
    summary, events = run_events(litellm_db)
    assert summary.tally[RowClass.BILLABLE].rows == summary.events == len(events) == 3
    assert summary.tally[RowClass.INVALID_COST].rows == 1
    properties = [cast("dict[str, object]", event["properties"]) for event in events]
    by_request = {values["litellm_request_id"]: values for values in properties}
    assert by_request[rows[0].request_id]["model"] is None
    assert by_request[rows[1].request_id]["prompt_tokens"] is None
    assert by_request[rows[1].request_id]["input_tokens"] is None
    assert by_request[rows[2].request_id]["total_tokens"] is None
    assert rows[3].request_id not in by_request


def test_spend_log_rows_are_only_read(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows: list[SpendLog] = list(factory.day(DAY, 200))
    insert(*rows)
    snapshot = (
        "SELECT md5(string_agg(t::text, ',' ORDER BY request_id)) FROM \"LiteLLM_SpendLogs\" t"
    )
    with connect(litellm_db) as connection:
        before = connection.execute(snapshot).fetchone()
    run_events(litellm_db)
    with connect(litellm_db) as connection:
        assert connection.execute(snapshot).fetchone() == before


def test_stopping_midway_cancels_the_read_and_leaves_the_connection_usable(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    insert(*factory.day(DAY, 3000))
    with open_snapshot(litellm_db) as connection:
        chunks = read_window(connection, litellm_db, ChargeBy.END_USER_ID, window(), chunk_rows=500)
        assert next(chunks).num_rows > 0
        assert isinstance(chunks, types.GeneratorType)
        chunks.close()  # the read is cancelled: its transaction ends, the connection lives on
        connection.rollback()
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_an_error_while_reading_leaves_no_copy_behind(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    insert(*factory.day(DAY, 3000))

    def consume() -> None:
        with open_snapshot(litellm_db) as connection:
            for _ in read_window(
                connection, litellm_db, ChargeBy.END_USER_ID, window(), chunk_rows=500
            ):
                raise RuntimeError("downstream")

    with pytest.raises(RuntimeError, match="downstream"):
        consume()
    assert "error ignored in rollback" not in caplog.text


@pytest.mark.parametrize("stop_at", [0, 1, 3, 4])
def test_a_read_stopped_at_any_chunk_even_past_its_last_row_leaves_the_connection_usable(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    caplog: pytest.LogCaptureFixture,
    stop_at: int,
) -> None:
    """A signal may land while the COPY's rows are all read but its end is not: still clean."""
    insert(*factory.day(DAY, 3000))
    with open_snapshot(litellm_db) as connection:
        statement = 'COPY (SELECT * FROM "LiteLLM_SpendLogs") TO STDOUT (FORMAT csv)'
        chunks = _copy_out(connection, statement, 700, litellm_db)
        got = [next(chunks) for _ in range(stop_at + 1)]  # the 5th comes after the COPY's end
        assert sum(rows for _, rows in got) == min(3000, 700 * (stop_at + 1))
        assert isinstance(chunks, types.GeneratorType)
        chunks.close()
        connection.rollback()
        assert connection.execute("SELECT 1").fetchone() == (1,)
    assert "error ignored in rollback" not in caplog.text
