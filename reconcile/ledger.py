"""reconcile's own state in Postgres: its runs, the events it sent, the one-run-at-a-time lock."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from reconcile import queries
from reconcile.errors import ConfigError, SourceError, SourceUnavailable
from reconcile.postgres import Database, connect

DEFAULT_SCHEMA = "litellm_reconcile"


def migrations(schema: str) -> list[tuple[str, str]]:
    """Every migration of sql/ledger, in order, as (name, SQL with the schema filled in)."""
    folder = queries.sql_dir().joinpath("ledger")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    quoted = queries.schema_identifier(schema)
    return [
        (name, folder.joinpath(name).read_text(encoding="utf-8").replace("{schema}", quoted))
        for name in names
    ]


def migrate(database: Database, schema: str = DEFAULT_SCHEMA) -> list[str]:
    """Apply the migrations not applied yet, in one transaction; return their names.

    Concurrent calls take turns (a transaction advisory lock keyed on the schema): the second
    finds the schema made and applies nothing.
    """
    statements = queries.named("ledger.sql", schema=schema)
    applied: list[str] = []
    with connect(database) as connection, _explained(database, schema, "migrate"):
        connection.execute(statements["migrate_lock"], {"key": lock_key("migrate", schema, "")})
        exists = connection.execute(statements["schema_exists"], {"schema": schema}).fetchone()
        if not (exists and exists[0]):
            connection.execute(statements["create_schema"])
        connection.execute(statements["create_migrations_table"])
        done = {row[0] for row in connection.execute(statements["applied_migrations"])}
        for name, text in migrations(schema):
            if name not in done:
                connection.execute(text)
                connection.execute(statements["record_migration"], {"name": name})
                applied.append(name)
        connection.commit()
    return applied


def migration_script(schema: str = DEFAULT_SCHEMA) -> str:
    """What `migrate` runs, as one script a DBA can read and apply with psql (idempotent)."""
    statements = queries.named("ledger.sql", schema=schema)
    quoted = queries.schema_identifier(schema)
    parts = [
        "BEGIN;",
        f"CREATE SCHEMA IF NOT EXISTS {quoted};",
        statements["create_migrations_table"].strip(),
    ]
    for name, text in migrations(schema):
        parts += [
            f"-- {name}\n{text.strip()}",
            f"INSERT INTO {quoted}.schema_migrations (name) VALUES ('{name}') "
            "ON CONFLICT (name) DO NOTHING;",
        ]
    return "\n\n".join([*parts, "COMMIT;"]) + "\n"


@contextlib.contextmanager
def _explained(database: Database, schema: str, doing: str) -> Iterator[None]:
    """Postgres's refusals, as errors that say what to do: grant, raise a timeout, retry."""
    try:
        yield
    except psycopg.errors.QueryCanceled as error:  # 57014: an OperationalError, not a break
        raise SourceError(
            f"{database.setting} ({database}): a statement of reconcile's ledger was cancelled "
            f"({' '.join(str(error).split())}): raise statement_timeout (the URL's options, "
            "the role's setting, or --db-statement-timeout); running again is safe"
        ) from None
    except psycopg.OperationalError as error:
        raise SourceUnavailable(
            f"{database.setting} ({database}): the connection to reconcile's ledger broke "
            f"({' '.join(str(error).split())}): check that Postgres is up; running again is safe"
        ) from None
    except psycopg.errors.InsufficientPrivilege as error:
        reason = " ".join(str(error).split())
        if doing == "migrate":
            fix = (
                "have a DBA apply `reconcile migrate --print-sql`, or create the schema for this "
                f"role (CREATE SCHEMA {schema} AUTHORIZATION <role>), or keep the ledger in "
                "another database (RECONCILE_STATE_DATABASE_URL)"
            )
        else:
            fix = (
                f"run the job as the role that ran `reconcile migrate`, or grant this one USAGE on "
                f"schema {schema} and SELECT, INSERT, UPDATE on its tables and sequences"
            )
        raise ConfigError(
            f"{database.setting} ({database}) refused to {doing} reconcile's ledger "
            f"({reason}): {fix}"
        ) from None


def lock_key(source_id: str, code: str, charge_by: str) -> int:
    """The advisory-lock key of one (spend-log database by its server identity, code, charge-by)."""
    digest = hashlib.sha256(f"reconcile\x1f{source_id}\x1f{code}\x1f{charge_by}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Ledger:
    """One open connection to the state database for the length of a run (it holds the lock)."""

    def __init__(self, database: Database, schema: str = DEFAULT_SCHEMA) -> None:
        self.database = database
        self.schema = schema
        self._sql = queries.named("ledger.sql", schema=schema)
        self._stack = contextlib.ExitStack()
        self._connection: psycopg.Connection | None = None

    def __enter__(self) -> Ledger:
        self._connection = self._stack.enter_context(connect(self.database, autocommit=True))
        table = sql.SQL("{}.sent_events").format(sql.Identifier(self.schema)).as_string()
        with _explained(self.database, self.schema, "use"):
            found = self._connection.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (table,)
            ).fetchone()
        if not found or not found[0]:
            self.__exit__()
            raise ConfigError(
                f"{self.database.setting} ({self.database}) has no reconcile state schema "
                f"{self.schema!r}: run `reconcile migrate` once (with a role that may create it)"
            )
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()
        self._connection = None

    def _run(self, name: str, **params: Any) -> psycopg.Cursor[Any]:
        if self._connection is None:
            raise RuntimeError("the ledger is not open")
        with _explained(self.database, self.schema, "write"):
            return self._connection.execute(self._sql[name], params)

    def try_lock(self, key: int) -> bool:
        """Take the run lock for this connection's life; False when another run holds it.

        ConfigError behind PgBouncer (`?pgbouncer=true`): in transaction pooling the session
        that took the lock is not this connection's for long, so it would guard nothing.
        """
        if self.database.pgbouncer:
            raise ConfigError(
                f"{self.database.setting} ({self.database}) goes through PgBouncer "
                "(?pgbouncer=true), where a session advisory lock does not hold and two runs "
                "could send the same events: set RECONCILE_STATE_DATABASE_URL to a direct "
                "connection to Postgres (not the pooler) for reconcile's ledger and lock"
            )
        row = self._run("try_lock", key=key).fetchone()
        return bool(row and row[0])

    def last_coverage(
        self, *, source_id: str, source: str, code: str, charge_by: str
    ) -> dt.datetime | None:
        """Where the nightly job's own full coverage of this source ends, if it has run."""
        row = self._run(
            "last_coverage", source_id=source_id, source=source, code=code, charge_by=charge_by
        ).fetchone()
        return row[0] if row else None

    def first_attempt(
        self, *, source_id: str, source: str, code: str, charge_by: str
    ) -> dt.datetime | None:
        """Where the nightly job's earliest run on this source began, whatever its outcome."""
        row = self._run(
            "first_attempt", source_id=source_id, source=source, code=code, charge_by=charge_by
        ).fetchone()
        return row[0] if row else None

    def start_run(
        self,
        *,
        mode: str,
        source: str,
        source_id: str,
        code: str,
        charge_by: str,
        since: dt.datetime,
        until: dt.datetime,
        settings: Mapping[str, Any],
    ) -> int:
        """Record a run as running; returns its id."""
        row = self._run(
            "start_run",
            mode=mode,
            source=source,
            source_id=source_id,
            code=code,
            charge_by=charge_by,
            since=since,
            until=until,
            settings=json.dumps(settings, default=str),
        ).fetchone()
        if row is None:
            raise RuntimeError("INSERT ... RETURNING returned nothing")
        return int(row[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        counts: Mapping[str, Any],
        *,
        error: str | None = None,
        covered_until: dt.datetime | None = None,
    ) -> None:
        """Record how a run ended (and, for a nightly run, how far it covered in full)."""
        self._run(
            "finish_run",
            run_id=run_id,
            status=status,
            error=error,
            counts=json.dumps(counts, default=str),
            covered_until=covered_until,
        )

    def record_sending(self, run_id: int, events: Sequence[Mapping[str, Any]]) -> None:
        """Write the events about to be sent (status 'sending') before any of them is."""
        if self._connection is None:
            raise RuntimeError("the ledger is not open")
        with (
            _explained(self.database, self.schema, "write"),
            self._connection.transaction(),
            self._connection.cursor() as cursor,
        ):
            cursor.execute(self._sql["create_incoming"])
            with cursor.copy(self._sql["copy_incoming"]) as copy:
                for event in events:
                    copy.write_row(_ledger_row(event, run_id))
            cursor.execute(self._sql["merge_incoming"])

    def record_outcome(
        self, run_id: int, sent: Iterable[tuple[str, str]], already: Iterable[tuple[str, str]]
    ) -> None:
        """Mark events as delivered by this run, or found already in Lago."""
        for status, pairs in (("sent", list(sent)), ("already_in_lago", list(already))):
            if pairs:
                transaction_ids, subscriptions = zip(*pairs, strict=True)
                self._run(
                    "set_status",
                    status=status,
                    run_id=run_id,
                    transaction_ids=list(transaction_ids),
                    subscriptions=list(subscriptions),
                )

    def forget_unsent(self, run_id: int, pairs: Iterable[tuple[str, str]]) -> int:
        """Remove this run's 'sending' rows of events it never sent; how many were removed.

        `pairs` are (transaction id, subscription). Only for events that never went out (an
        interruption before their batch): a batch that may have reached Lago keeps its trace.
        """
        found = list(pairs)
        if not found:
            return 0
        transaction_ids, subscriptions = zip(*found, strict=True)
        cursor = self._run(
            "forget_unsent",
            run_id=run_id,
            transaction_ids=list(transaction_ids),
            subscriptions=list(subscriptions),
        )
        return cursor.rowcount

    def confirm_in_lago(self, code: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Events left 'sending' by an interrupted run that Lago turned out to hold: 'sent'.

        `pairs` (transaction id, subscription) are what Lago lists; only the few the ledger
        still has as 'sending' are written.
        """
        waiting = {(row[0], row[1]) for row in self._run("sending", code=code)}
        found = [pair for pair in pairs if pair in waiting] if waiting else []
        if not found:
            return 0
        cursor = self._run(
            "confirm_in_lago",
            transaction_ids=[tid for tid, _ in found],
            subscriptions=[sub for _, sub in found],
        )
        return cursor.rowcount


def _ledger_row(event: Mapping[str, Any], run_id: int) -> tuple[Any, ...]:
    properties = event["properties"]
    seconds = dt.timedelta(milliseconds=round(float(event["timestamp"]) * 1000))
    return (
        event["transaction_id"],
        event["external_subscription_id"],
        event["code"],
        properties["litellm_request_id"],
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + seconds,
        properties["response_cost"],
        run_id,
        "sending",
    )
