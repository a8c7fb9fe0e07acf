"""`reconcile migrate`, `backfill` and `run` from the command line: outputs and exit codes."""

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DAY, LAGO_KEY
from test_cli import run
from test_reconcile_e2e import billable, billed_once, callback, run_under_way

from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect, server_identity
from reconcile.testing.factory import SpendLog, SpendLogFactory

KEY = LAGO_KEY
pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def rows(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> list[SpendLog]:
    written = list(factory.day(DAY, 300))
    insert(*written)
    return written


def environment(database: Database, lago: LagoEmulator) -> dict[str, str]:
    return {"DATABASE_URL": database.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
            "LAGO_API_EVENT_CODE": "openai_tokens"}  # fmt: skip


WINDOW = ["--since", "2026-11-01", "--until", "2026-11-02"]


def test_migrate_is_idempotent_and_can_show_its_sql(litellm_db: Database) -> None:
    env = {"DATABASE_URL": litellm_db.url()}
    behind = run(["migrate", "--check"], env=env)
    assert behind.exit_code == 3
    assert "without a ledger: 001_runs_and_sent_events, " in behind.stderr
    first, second = run(["migrate"], env=env), run(["migrate"], env=env)
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert (
        "updated (001_runs_and_sent_events, 002_server_identity_and_coverage, "
        "003_interrupted_runs, 004_run_slices, 005_run_parts)" in first.stderr
    )
    assert "already up to date" in second.stderr
    current = run(["migrate", "--check"], env=env)
    assert current.exit_code == 0, current.stderr
    assert "up to date, at revision 005_run_parts" in current.stderr
    behind = run(["migrate", "--check", "--state-schema", "not_yet"], env=env)
    assert behind.exit_code == 3
    assert "is behind, without a ledger" in behind.stderr
    assert "`reconcile migrate --print-sql`" in behind.stderr
    shown = run(["migrate", "--print-sql", "--state-schema", "billing_audit"])
    assert shown.exit_code == 0
    assert shown.stdout.startswith("BEGIN;") and shown.stdout.rstrip().endswith("COMMIT;")
    assert "CREATE TABLE billing_audit.sent_events" in shown.stdout
    assert "billing_audit.alembic_version" in shown.stdout
    after = run(["migrate", "--print-sql", "--from-revision", "002_server_identity_and_coverage"])
    assert after.exit_code == 0 and "CREATE TABLE litellm_reconcile.runs" not in after.stdout
    assert "version_num='003_interrupted_runs'" in after.stdout
    alone = run(["migrate", "--from-revision", "002_server_identity_and_coverage"], env=env)
    assert alone.exit_code == 2 and "--from-revision goes with --print-sql" in alone.stderr
    both = run(["migrate", "--check", "--print-sql"], env=env)
    assert both.exit_code == 2 and "--check and --print-sql do not go together" in both.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--state-schema", "pg_ledger"], "names starting with pg_ are reserved by Postgres"),
        (["--state-schema", "public"], "schema public already holds a table reconcile's ledger"),
    ],
)
def test_a_schema_reconcile_cannot_use_is_a_configuration_error(
    litellm_db: Database, arguments: list[str], message: str
) -> None:
    with connect(litellm_db) as connection:
        connection.execute("CREATE TABLE public.runs (id int)")  # someone else's
        connection.commit()
    for command in (["migrate", *arguments], ["migrate", "--check", *arguments]):
        result = run(command, env={"DATABASE_URL": litellm_db.url()})
        if command[1] == "--check" and "public" in arguments:
            assert result.exit_code == 3  # behind: migrate is what says why it cannot
            continue
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr and "--state-schema" in result.stderr


def test_the_sql_to_a_full_disk_is_a_one_line_error() -> None:
    with Path("/dev/full").open("wb") as full:
        result = subprocess.run([sys.executable, "-m", "reconcile", "migrate", "--print-sql"],
                                stdout=full, stderr=subprocess.PIPE, text=True, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "reconcile: error: stdout: cannot write: No space left on device; free some space or "
        "redirect elsewhere"
    )


def test_a_ledger_behind_this_release_stops_the_job_before_it_reads(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    """After an upgrade, before `reconcile migrate`: exit 2 naming the fix, nothing sent."""
    env = environment(litellm_db, lago)
    assert run(["migrate"], env=env).exit_code == 0
    with connect(litellm_db) as connection:
        connection.execute(
            "UPDATE litellm_reconcile.alembic_version "
            "SET version_num = '002_server_identity_and_coverage'"
        )
        connection.commit()
    for command in (["backfill", *WINDOW], ["run"]):
        result = run(command, env=env)
        assert result.exit_code == 2, result.stderr
        assert "is behind (at revision 002_server_identity_and_coverage; this release needs " in (
            result.stderr
        )
    assert lago.stored_events() == []


def test_backfill_without_migrate_says_what_to_do(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    result = run(["backfill", *WINDOW], env=environment(litellm_db, lago))
    assert result.exit_code == 2
    assert "run `reconcile migrate` once" in result.stderr


def test_dry_run_exits_3_shows_a_sample_and_sends_nothing(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    env = environment(litellm_db, lago)
    assert run(["migrate"], env=env).exit_code == 0
    result = run(["backfill", *WINDOW, "--dry-run"], env=env)
    assert result.exit_code == 3, result.stderr
    sample = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(sample) == 5
    assert all(event["code"] == "openai_tokens" for event in sample)
    assert "to send, per customer" in result.stderr
    assert lago.stored_events() == []


def test_backfill_then_run_then_nothing_left(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    env = environment(litellm_db, lago)
    assert run(["migrate"], env=env).exit_code == 0
    callback(lago, billable(rows)[::2])
    done = run(["backfill", *WINDOW], env=env)
    assert done.exit_code == 0, done.stderr
    assert "sent now" in done.stderr
    billed_once(lago, rows)
    nightly = run(["run", "--since", "2026-11-01", "--retention-days", "3650"], env=env)
    assert nightly.exit_code == 0, nightly.stderr
    assert "run 2" in nightly.stderr or "run" in nightly.stderr
    billed_once(lago, rows)
    with connect(litellm_db) as connection:
        modes = connection.execute(
            "SELECT mode, status FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()
    assert modes == [("backfill", "succeeded"), ("run", "succeeded")]


def test_a_row_without_a_model_is_backfilled_with_a_null_model(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    # NOT NULL in LiteLLM's schema, but not in a table an older release made.
    chosen = billable(rows)[0]
    with connect(litellm_db) as connection:
        connection.execute('ALTER TABLE "LiteLLM_SpendLogs" ALTER COLUMN model DROP NOT NULL')
        connection.execute(
            'UPDATE "LiteLLM_SpendLogs" SET model = NULL WHERE request_id = %s', [chosen.request_id]
        )
        connection.commit()
    env = environment(litellm_db, lago)
    run(["migrate"], env=env)
    done = run(["backfill", *WINDOW], env=env)
    assert done.exit_code == 0, done.stderr
    sent = {event["properties"]["litellm_request_id"]: event for event in lago.stored_events()}
    assert len(sent) == len(billable(rows))
    assert sent[chosen.request_id]["properties"]["model"] is None


def test_a_backfill_for_a_customer_the_window_lacks_says_so(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    """One absent id of two: a note, exit 0; every id absent (a typo, most likely): exit 2."""
    env = environment(litellm_db, lago)
    run(["migrate"], env=env)
    real = str(billable(rows)[0].end_user)
    some = run(["backfill", *WINDOW, "--customer", real, "--customer", "ghost"], env=env)
    assert some.exit_code == 0, some.stderr
    assert "--customer 'ghost': no spend-log row with that end_user_id" in some.stderr
    assert {event["external_subscription_id"] for event in lago.stored_events()} == {real}
    none = run(["backfill", *WINDOW, "--customer", "nobody"], env=env)
    assert none.exit_code == 2, none.stderr
    assert "--customer 'nobody': no spend-log row" in none.stderr.splitlines()[-1]
    assert "LAGO_API_CHARGE_BY" in none.stderr


def test_max_events_exits_3_until_everything_is_sent(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    env = environment(litellm_db, lago)
    run(["migrate"], env=env)
    assert run(["backfill", *WINDOW, "--max-events", "10"], env=env).exit_code == 3
    assert run(["backfill", *WINDOW], env=env).exit_code == 0
    billed_once(lago, rows)


def test_another_run_under_way_exits_4(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    env = environment(litellm_db, lago)
    run(["migrate"], env=env)
    with run_under_way(litellm_db, server_identity(litellm_db)):
        result = run(["backfill", *WINDOW], env=env)
    assert result.exit_code == 4
    assert "is under way: run 1" in result.stderr


@pytest.mark.parametrize(
    ("unset", "message"),
    [("LAGO_API_BASE", "LAGO_API_BASE (or --lago-api-base) is not set"),
     ("LAGO_API_KEY", "LAGO_API_KEY (or --lago-api-key) is not set")],
)  # fmt: skip
def test_lago_settings_are_required(
    litellm_db: Database, lago: LagoEmulator, unset: str, message: str
) -> None:
    env = {key: value for key, value in environment(litellm_db, lago).items() if key != unset}
    result = run(["backfill", *WINDOW], env=env)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_wrong_lago_key_exits_2_without_showing_it(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator
) -> None:
    env = {**environment(litellm_db, lago), "LAGO_API_KEY": "not-the-key-123"}
    run(["migrate"], env=env)
    result = run(["backfill", *WINDOW], env=env)
    assert result.exit_code == 2
    assert "check LAGO_API_KEY" in result.stderr
    assert "not-the-key-123" not in result.stderr + result.stdout


def test_an_unreachable_spend_log_database_exits_1(
    lago: LagoEmulator, litellm_db: Database
) -> None:
    env = {**environment(litellm_db, lago), "DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/litellm",
           "RECONCILE_STATE_DATABASE_URL": litellm_db.url()}  # fmt: skip
    run(["migrate"], env={"DATABASE_URL": litellm_db.url()})
    result = run(["backfill", *WINDOW], env=env)
    assert result.exit_code == 1
    assert "secret" not in result.stderr


def test_report_check_alerts_until_the_backfill_and_every_format_is_written(
    litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator, tmp_path: Path
) -> None:
    env = environment(litellm_db, lago)
    delivered = billable(rows)[10:]
    callback(lago, delivered)
    assert run(["migrate"], env=env).exit_code == 0
    before = run(["report", *WINDOW, "--format", "csv", "--check"], env=env)
    assert before.exit_code == 3, before.stderr
    table = list(csv.DictReader(io.StringIO(before.stdout)))
    assert table[-1]["customer"] == "TOTAL"
    assert int(table[-1]["missing_events"]) == 10
    assert "under-billed" in before.stderr  # the summary, on stderr
    sent = run(["backfill", *WINDOW, "--yes"], env=env)
    assert sent.exit_code == 0, sent.stderr
    assert "0 under-billed, 0 over-billed" in sent.stderr  # the run ends with the report's summary
    after = run(["report", *WINDOW, "--format", "json", "--check"], env=env)
    assert after.exit_code == 0, after.stderr
    document = json.loads(after.stdout)
    assert document["totals"]["missing_events"] == 0
    assert document["totals"]["backfilled_events"] == 10
    for fmt in ("table", "md", "xlsx", "html"):
        target = tmp_path / f"report.{fmt}"
        written = run(
            ["report", *WINDOW, "--by", "month", "--format", fmt, "-o", str(target)], env=env
        )
        assert written.exit_code == 0, written.stderr
        assert target.stat().st_size > 0
    assert KEY not in after.stdout + after.stderr


def test_report_refuses_a_bad_time_zone_and_tolerance(
    litellm_db: Database, lago: LagoEmulator
) -> None:
    env = environment(litellm_db, lago)
    zone = run(["report", *WINDOW, "--timezone", "Mars/Olympus"], env=env)
    assert zone.exit_code == 2 and "IANA" in zone.stderr
    tolerance = run(["report", *WINDOW, "--tolerance", "-1"], env=env)
    assert tolerance.exit_code == 2 and "--tolerance" in tolerance.stderr
