"""Ledgers made by the release before Alembic: `reconcile migrate` stamps what exists, then upgrades.

tests/fixtures/ledger_before_alembic/ holds that release's sql/ledger/*.sql, applied here the
way its runner applied them (a `schema_migrations` table naming each file).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from psycopg import sql

from reconcile import commands
from reconcile.errors import ConfigError
from reconcile.ledger import Ledger, LedgerRevisionMismatch, read_backfilled
from reconcile.postgres import Database, connect
from reconcile.testing.litellm_schema import psql_command

FIXTURES = Path(__file__).parent / "fixtures" / "ledger_before_alembic"
OLD_FILES = sorted(path.name for path in FIXTURES.glob("*.sql"))


def old_runner(database: Database, schema: str, names: list[str]) -> None:
    """What the previous release's `reconcile migrate` did, file by file, in one transaction."""
    quoted = sql.Identifier(schema).as_string()
    with connect(database) as connection:
        connection.execute(f"CREATE SCHEMA {quoted}")  # type: ignore[call-overload]
        connection.execute(
            f"CREATE TABLE {quoted}.schema_migrations "  # type: ignore[call-overload]
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for name in names:
            text = (FIXTURES / name).read_text(encoding="utf-8").replace("{schema}", quoted)
            connection.execute(text)  # type: ignore[call-overload]
            connection.execute(
                f"INSERT INTO {quoted}.schema_migrations (name) VALUES (%s)",  # type: ignore[call-overload]
                (name,),
            )
        connection.commit()


def version(database: Database, schema: str) -> list[tuple[str]]:
    with connect(database) as connection:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))
        return connection.execute(query).fetchall()


def record_a_run(database: Database, schema: str, status: str) -> None:
    with Ledger(database, schema) as ledger:
        run_id = ledger.start_run(
            mode="run", source="postgresql://x@h/litellm", source_id="cluster:1/litellm",
            code="tokens", charge_by="end_user_id", since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            until=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), settings={"dry_run": False},
        )  # fmt: skip
        ledger.finish_run(run_id, status, {"sent": 0})


def record_an_old_run(database: Database, schema: str) -> None:
    """A run as the release before Alembic recorded it."""
    quoted = sql.Identifier(schema).as_string()
    with connect(database) as connection:
        connection.execute(
            f"INSERT INTO {quoted}.runs (mode, source, event_code, charge_by, window_since, "  # type: ignore[call-overload]
            "window_until, settings, status) VALUES ('run', 'postgresql://x@h/litellm', "
            "'tokens', 'end_user_id', '2026-01-01Z', '2026-01-02Z', '{}', 'succeeded')"
        )
        connection.commit()


def test_a_ledger_of_the_previous_release_is_stamped_and_keeps_its_runs(
    litellm_db: Database,
) -> None:
    old_runner(litellm_db, "litellm_reconcile", OLD_FILES)
    record_an_old_run(litellm_db, "litellm_reconcile")
    state = commands.StateSettings(litellm_db)
    assert commands.pending_migrations(state) == ["001_runs_and_sent_events",
        "002_server_identity_and_coverage", "003_interrupted_runs", "004_run_slices", "005_run_parts"]  # fmt: skip
    assert commands.legacy_ledger_revision(state) == "003_interrupted_runs"
    with pytest.raises(
        LedgerRevisionMismatch, match=r"is behind \(made by a release before Alembic"
    ):
        record_a_run(litellm_db, "litellm_reconcile", "interrupted")  # a run before migrate
    migrated = commands.migrate(state)
    assert (migrated.stamped, migrated.applied) == (
        "003_interrupted_runs",
        ["004_run_slices", "005_run_parts"],
    )
    assert version(litellm_db, "litellm_reconcile") == [("005_run_parts",)]
    assert commands.pending_migrations(state) == []
    record_a_run(litellm_db, "litellm_reconcile", "interrupted")
    with connect(litellm_db) as connection:
        statuses = connection.execute("SELECT status FROM litellm_reconcile.runs ORDER BY id")
        assert statuses.fetchall() == [("succeeded",), ("interrupted",)]


def test_a_ledger_two_migrations_behind_gets_the_third(litellm_db: Database) -> None:
    old_runner(litellm_db, "billing_audit", OLD_FILES[:2])
    state = commands.StateSettings(litellm_db, "billing_audit")
    assert commands.migrate(state).applied == [
        "003_interrupted_runs",
        "004_run_slices",
        "005_run_parts",
    ]
    record_a_run(litellm_db, "billing_audit", "interrupted")


def shape(database: Database, schema: str) -> dict[str, list[tuple[str, ...]]]:
    """Columns, indexes and constraints of a ledger, with its schema's name taken out."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, "
        "coalesce(column_default, '') FROM information_schema.columns "
        "WHERE table_schema = %(schema)s AND table_name IN ('runs', 'sent_events')",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s "
        "AND tablename IN ('runs', 'sent_events')",
        "constraints": "SELECT conrelid::regclass::text, contype::text, "
        "pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = %(schema)s::regnamespace AND contype IN ('c', 'f', 'u')",
    }
    found = {}
    with connect(database) as connection:
        for name, query in queries.items():
            rows = connection.execute(query, {"schema": schema}).fetchall()  # type: ignore[call-overload]
            found[name] = sorted(
                tuple(str(value).replace(f"{schema}.", "") for value in row) for row in rows
            )
    return found


@pytest.mark.parametrize("behind", [0, 1, 2])
def test_the_revisions_make_the_tables_the_old_files_made(
    litellm_db: Database, behind: int
) -> None:
    old_runner(litellm_db, "old_ledger", OLD_FILES[: len(OLD_FILES) - behind])
    commands.migrate(commands.StateSettings(litellm_db, "old_ledger"))
    commands.migrate(commands.StateSettings(litellm_db, "new_ledger"))
    old, new = shape(litellm_db, "old_ledger"), shape(litellm_db, "new_ledger")
    assert old == new
    assert len(new["indexes"]) == 7


def stamp(database: Database, schema: str, revision: str) -> None:
    """Alembic's version table at `revision`, as `migrate` of that release left it."""
    quoted = sql.Identifier(schema).as_string()
    with connect(database) as connection:
        connection.execute(
            f"CREATE TABLE {quoted}.alembic_version (version_num varchar(32) PRIMARY KEY)"  # type: ignore[call-overload]
        )
        connection.execute(f"INSERT INTO {quoted}.alembic_version VALUES (%s)", (revision,))  # type: ignore[call-overload]
        connection.commit()


def test_a_dba_applies_only_what_an_existing_ledger_lacks(litellm_db: Database) -> None:
    old_runner(litellm_db, "audit", OLD_FILES[:2])
    stamp(litellm_db, "audit", "002_server_identity_and_coverage")
    state = commands.StateSettings(litellm_db, "audit")
    assert commands.ledger_revision(state) == "002_server_identity_and_coverage"
    assert commands.pending_migrations(state) == [
        "003_interrupted_runs",
        "004_run_slices",
        "005_run_parts",
    ]
    script = commands.migration_sql("audit", after="002_server_identity_and_coverage")
    assert "CREATE TABLE audit.runs" not in script  # the tables are there: only 003 to 005
    assert "UPDATE audit.alembic_version SET version_num='003_interrupted_runs'" in script
    assert "UPDATE audit.alembic_version SET version_num='004_run_slices'" in script
    assert "UPDATE audit.alembic_version SET version_num='005_run_parts'" in script
    command, environment = psql_command(litellm_db)
    subprocess.run(command, input=script, env=environment, text=True, check=True)
    assert commands.pending_migrations(state) == []
    commands.migrate(commands.StateSettings(litellm_db, "fresh"))
    assert shape(litellm_db, "audit") == shape(litellm_db, "fresh")


def test_a_revision_this_release_does_not_know_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"--from-revision '002' is not a revision.*use one of 001_"
    ):
        commands.migration_sql("audit", after="002")


def test_a_ledger_a_newer_release_migrated_is_refused(litellm_db: Database) -> None:
    commands.migrate(commands.StateSettings(litellm_db, "audit"))
    with connect(litellm_db) as connection:
        connection.execute("UPDATE audit.alembic_version SET version_num = '099_from_the_future'")
        connection.commit()
    state = commands.StateSettings(litellm_db, "audit")
    for attempt in (commands.migrate, commands.pending_migrations):
        with pytest.raises(
            ConfigError, match=r"revision '099_from_the_future', which this release"
        ):
            attempt(state)
    with pytest.raises(LedgerRevisionMismatch, match="099_from_the_future', which this release"):
        Ledger(litellm_db, "audit").__enter__()  # run and backfill refuse it too
    window = {
        "since": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "until": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    }
    with pytest.raises(LedgerRevisionMismatch):  # the report notes it, shows nothing backfilled
        read_backfilled(litellm_db, "audit", code="tokens", charge_by="end_user_id", **window)


def test_a_ledger_behind_is_refused_by_the_job_with_the_fix(litellm_db: Database) -> None:
    old_runner(litellm_db, "audit", OLD_FILES[:1])
    stamp(litellm_db, "audit", "001_runs_and_sent_events")
    with pytest.raises(LedgerRevisionMismatch, match=r"behind \(at revision 001_runs_and_sent_"
                       r"events; this release needs 005_run_parts\): run `reconcile "
                       "migrate`"):  # fmt: skip
        Ledger(litellm_db, "audit").__enter__()


def test_a_dba_upgrades_a_ledger_of_the_previous_release_with_the_script(
    litellm_db: Database,
) -> None:
    """Not stamped yet: the script from the revision it matches stamps it, then upgrades."""
    old_runner(litellm_db, "audit", OLD_FILES[:2])
    record_an_old_run(litellm_db, "audit")
    state = commands.StateSettings(litellm_db, "audit")
    assert commands.legacy_ledger_revision(state) == "002_server_identity_and_coverage"
    script = commands.migration_sql("audit", after="002_server_identity_and_coverage")
    command, environment = psql_command(litellm_db)
    for _ in range(2):  # applied twice: the second finds it done and changes nothing
        applied = subprocess.run([*command, "-v", "ON_ERROR_STOP=1"], input=script, check=False,
                                 env=environment, text=True, capture_output=True)  # fmt: skip
        if applied.returncode:  # the second: revision 003's steps fail, rolled back whole
            assert "already exists" in applied.stderr
    assert commands.ledger_revision(state) == "005_run_parts"
    assert commands.pending_migrations(state) == []
    record_a_run(litellm_db, "audit", "interrupted")
