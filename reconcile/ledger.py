"""reconcile's own state in Postgres: its runs and the events it sent (leases: reconcile.leases)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext

from reconcile import ledger_queries as statements
from reconcile import queries
from reconcile.engine import driver_errors, engine
from reconcile.errors import ConfigError, SourceError, SourceUnavailable
from reconcile.ledger_revisions import revisions
from reconcile.postgres import Database
from reconcile.window import from_ms

DEFAULT_SCHEMA = "litellm_reconcile"


@contextlib.contextmanager
def explained(database: Database, schema: str, doing: str) -> Iterator[None]:
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
    except psycopg.errors.DuplicateTable as error:
        shown = queries.schema_shown(schema)
        raise ConfigError(
            f"{database.setting} ({database}): schema {shown} already holds a table "
            f"reconcile's ledger would create ({_first_line(error)}), not made by reconcile: "
            "give the ledger a schema of its own (--state-schema)"
        ) from None
    except psycopg.errors.InsufficientPrivilege as error:
        quoted = queries.schema_shown(schema)
        if doing == "read":
            fix = f"grant this role USAGE ON SCHEMA {quoted} and SELECT on its tables"
        elif doing == "migrate":
            fix = (
                "have a DBA apply `reconcile migrate --print-sql`, or create the schema for this "
                f"role (CREATE SCHEMA {quoted} AUTHORIZATION <role>), or keep the ledger in "
                "another database (RECONCILE_STATE_DATABASE_URL)"
            )
        else:
            fix = (
                f"run the job as the role that ran `reconcile migrate`, or grant this one USAGE "
                f"ON SCHEMA {quoted} and SELECT, INSERT, UPDATE, DELETE on its tables and "
                "USAGE on its sequences"
            )
        raise ConfigError(
            f"{database.setting} ({database}) refused to {doing} reconcile's ledger "
            f"({_first_line(error)}): {fix}"
        ) from None


def _first_line(error: Exception) -> str:
    """A driver error's message without the SQL it quotes (LINE 2: ... ^)."""
    return " ".join(str(error).split("\n", 1)[0].split())


class LedgerRevisionMismatch(ConfigError):
    """The ledger is at another revision than this release's: behind, or a newer release's."""


class NoLedger(ConfigError):
    """The state database has no ledger in the schema: `reconcile migrate` has not run there."""


@contextlib.contextmanager
def opened(database: Database, schema: str, doing: str) -> Iterator[sa.Connection]:
    """A connection whose tables are `schema`'s (ledger_tables has none of its own).

    Raises NoLedger when the schema holds no ledger; ConfigError (from `explained`) when the
    role may not read it; SourceUnavailable when the database does not answer.
    """
    queries.schema_identifier(schema)
    with contextlib.ExitStack() as stack:
        with explained(database, schema, doing), driver_errors():
            connection = stack.enter_context(engine(database).connect())
            found = sa.inspect(connection).has_table("sent_events", schema=schema)
        if not found:
            raise NoLedger(
                f"{database.setting} ({database}) has no reconcile state schema {schema!r}: "
                "run `reconcile migrate` once (with a role that may create it)"
            )
        with explained(database, schema, doing), driver_errors():
            _require_revision(connection, database, schema)
        yield connection.execution_options(schema_translate_map={None: schema})


def stamped_revision(connection: sa.Connection, schema: str) -> str | None:
    """The revision Alembic's version table in `schema` records; None where there is none."""
    migration = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return migration.get_current_revision()


def _require_revision(connection: sa.Connection, database: Database, schema: str) -> None:
    """LedgerRevisionMismatch unless the ledger is at the revision this release needs."""
    needed = revisions()[-1]
    current = stamped_revision(connection, schema)
    connection.rollback()  # the inspection's transaction: nothing is held between statements
    if current == needed:
        return
    where = f"{database.setting} ({database}): the ledger in schema {queries.schema_shown(schema)}"
    if current is not None and current not in revisions():
        raise LedgerRevisionMismatch(
            f"{where} is at revision {current!r}, which this release of reconcile does not know "
            "(a newer one migrated it): run that release, or upgrade reconcile"
        )
    at = f"at revision {current}" if current else "made by a release before Alembic"
    raise LedgerRevisionMismatch(
        f"{where} is behind ({at}; this release needs {needed}): run `reconcile migrate` (or "
        "have a DBA apply what `reconcile migrate --check` suggests)"
    )


def read_backfilled(
    database: Database,
    schema: str,
    *,
    code: str,
    charge_by: str,
    since: dt.datetime,
    until: dt.datetime,
) -> dict[str, int]:
    """Transaction id -> run id of what reconcile sent (or found already in Lago).

    Events of `code` and `charge_by` whose rows ended in [since, until): the ledger's side of
    a report's "backfilled by us". Reads only (the read-only role may). Raises as `opened`.
    """
    query = statements.backfilled(code=code, charge_by=charge_by, since=since, until=until)
    with (
        opened(database, schema, "read") as connection,
        explained(database, schema, "read"),
        driver_errors(),
    ):
        return {row.transaction_id: row.run_id for row in connection.execute(query)}


def lock_key(source_id: str, code: str, charge_by: str) -> int:
    """The advisory-lock key of one (spend-log database by its server identity, code, charge-by)."""
    digest = hashlib.sha256(f"reconcile\x1f{source_id}\x1f{code}\x1f{charge_by}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Ledger:
    """One open connection to the state database for the length of a run.

    Each statement commits on its own, unless run inside `transaction`; nothing is held
    between transactions, so the connection may go through PgBouncer's transaction pooling.
    """

    def __init__(self, database: Database, schema: str = DEFAULT_SCHEMA) -> None:
        self.database = database
        self.schema = schema
        self._stack = contextlib.ExitStack()
        self._connection: sa.Connection | None = None
        self._in_transaction = False

    def __enter__(self) -> Ledger:
        self._connection = self._stack.enter_context(opened(self.database, self.schema, "use"))
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()
        self._connection = None

    def execute(self, statement: sa.Executable, **params: Any) -> sa.CursorResult[Any]:
        """Run one statement, committed on its own (inside `transaction`: with it)."""
        if self._connection is None:
            raise RuntimeError("the ledger is not open")
        with explained(self.database, self.schema, "write"), driver_errors():
            try:
                result = self._connection.execute(statement, params)
                if not self._in_transaction:
                    self._connection.commit()
            except BaseException:
                self._connection.rollback()
                raise
        return result

    _run = execute

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements run inside, committed together (rolled back on any error)."""
        if self._connection is None:
            raise RuntimeError("the ledger is not open")
        if self._in_transaction:  # within another: part of it
            yield
            return
        self._in_transaction = True
        try:
            yield
            with explained(self.database, self.schema, "write"), driver_errors():
                self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            self._in_transaction = False

    def last_coverage(self, **source: str) -> dt.datetime | None:
        """Where the nightly job's own full coverage of this source ends, if it has run.

        `source` is source_id, source, code and charge_by, as `start_run` recorded them.
        """
        return self._moment(statements.last_coverage(**source))

    def first_attempt(self, **source: str) -> dt.datetime | None:
        """Where the nightly job's earliest run on this source began, whatever its outcome."""
        return self._moment(statements.first_attempt(**source))

    def _moment(self, statement: sa.Select[Any]) -> dt.datetime | None:
        found: dt.datetime | None = self._run(statement).scalar()
        return found

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
        statement = statements.start_run(
            mode=mode, source=source, source_id=source_id, code=code, charge_by=charge_by,
            since=since, until=until, settings=settings,
        )  # fmt: skip
        return int(self._run(statement).scalar_one())

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
        self._run(statements.finish_run(run_id, status, counts, error, covered_until))

    def latest_run(self, **run: Any) -> tuple[int, str, dict[str, Any]] | None:
        """The latest run of a command over a window: its id, status and recorded settings.

        `run`: mode, source_id, code, charge_by, since, until. None if there was none.
        """
        found = self._run(statements.latest_run(**run)).first()
        if found is None:
            return None
        fields = found._mapping  # SQLAlchemy's public mapping view of a row
        return int(fields["id"]), str(fields["status"]), dict(fields["settings"])

    def reopen_run(self, run_id: int, settings: Mapping[str, Any]) -> None:
        """Mark a run cut short as running again, with its settings (noting the resumption)."""
        self._run(statements.reopen_run(run_id, settings))

    def record_sending(self, run_id: int, events: Sequence[Mapping[str, Any]]) -> None:
        """Write the events about to be sent (status 'sending') before any of them is.

        One transaction: psycopg's COPY, on the engine's own driver connection, into a
        temporary table, then one merge.
        """
        connection = self._connection
        if connection is None:
            raise RuntimeError("the ledger is not open")
        driver: psycopg.Connection[Any] | None = connection.connection.driver_connection
        if driver is None:
            raise RuntimeError("the ledger's connection is closed")
        with explained(self.database, self.schema, "write"), driver_errors():
            try:
                connection.execute(statements.create_incoming(self.schema))
                with driver.cursor() as cursor, cursor.copy(statements.COPY_INCOMING) as copy:
                    for event in events:
                        copy.write_row(_ledger_row(event, run_id))
                connection.execute(statements.merge_incoming())
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

    def record_outcome(
        self, run_id: int, sent: Iterable[tuple[str, str]], already: Iterable[tuple[str, str]]
    ) -> None:
        """Mark events as delivered by this run, or found already in Lago."""
        for status, pairs in (("sent", list(sent)), ("already_in_lago", list(already))):
            if pairs:
                self._run(statements.set_status(status, run_id, pairs))

    def forget_unsent(self, run_id: int, pairs: Iterable[tuple[str, str]]) -> int:
        """Remove this run's 'sending' rows of events it never sent; how many were removed.

        `pairs` are (transaction id, subscription). Only for events that never went out (an
        interruption before their batch): a batch that may have reached Lago keeps its trace.
        """
        found = list(pairs)
        if not found:
            return 0
        return self._run(statements.forget_unsent(run_id, found)).rowcount

    def confirm_in_lago(self, code: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Events left 'sending' by an interrupted run that Lago turned out to hold: 'sent'.

        `pairs` (transaction id, subscription) are what Lago lists; only the few the ledger
        still has as 'sending' are written.
        """
        rows: Iterable[Any] = self._run(statements.sending(code))
        waiting = {(row[0], row[1]) for row in rows}
        found = [pair for pair in pairs if pair in waiting] if waiting else []
        if not found:
            return 0
        return self._run(statements.confirm_in_lago(found)).rowcount


def _ledger_row(event: Mapping[str, Any], run_id: int) -> tuple[Any, ...]:
    properties = event["properties"]
    timestamp = from_ms(round(Decimal(str(event["timestamp"])) * 1000))  # "1793491201.586"
    return (
        event["transaction_id"],
        event["external_subscription_id"],
        event["code"],
        properties["litellm_request_id"],
        timestamp,
        properties["response_cost"],
        run_id,
        "sending",
    )
