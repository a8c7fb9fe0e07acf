"""Stream a window of `"LiteLLM_SpendLogs"` rows as Arrow tables, in bounded memory."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import select
from collections.abc import Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import pq
from psycopg import sql as pgsql

from reconcile import queries
from reconcile.errors import ConfigError, ReconcileError, SourceError, SourceUnavailable
from reconcile.postgres import Database, connect
from reconcile.settings import DEFAULT_CHUNK_ROWS, ChargeBy
from reconcile.window import Window

log = logging.getLogger(__name__)


#: One row of the window, as `sql/spend_logs_window.sql` selects it.
SPEND_ROW_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("call_id", pa.string()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("created_ms", pa.int64()),
        ("succeeded", pa.bool_()),
        ("charge_by_id", pa.string()),
        ("model", pa.string()),
        # Postgres' shortest exact text of the double, e.g. "1.5e-05", "NaN": no digit lost.
        ("spend", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("custom_llm_provider", pa.string()),
    ]
)

REQUIRED_COLUMNS = (
    "request_id",
    "startTime",
    "endTime",
    "spend",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "metadata",
)
OPTIONAL_COLUMNS = {
    "status": "text",
    "litellm_call_id": "text",
    "created_at": "timestamp",
    "custom_llm_provider": "text",
}
#: "No lower bound on endTime": before any row LiteLLM ever wrote.
DISTANT_PAST = dt.datetime(1970, 1, 1)

# One thread: chunks are small, and the other core is busy producing them in Postgres.
_CSV_READ = pacsv.ReadOptions(column_names=SPEND_ROW_SCHEMA.names, use_threads=False)
_CSV_CONVERT = pacsv.ConvertOptions(
    column_types=SPEND_ROW_SCHEMA,
    # COPY's CSV writes NULL unquoted and '' quoted: only the former is null.
    null_values=[""],
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
    true_values=["t"],
    false_values=["f"],
)
_CSV_PARSE = pacsv.ParseOptions()
_CSV_PARSE_MULTILINE = pacsv.ParseOptions(newlines_in_values=True)


@contextlib.contextmanager
def open_snapshot(database: Database) -> Iterator[psycopg.Connection]:
    """A connection inside one read-only REPEATABLE READ transaction: a consistent snapshot."""
    with connect(database) as connection:
        connection.read_only = True
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            yield connection
        finally:
            if not connection.closed:  # closed: a dead connection was given up
                _abandon_copy(connection)
                connection.rollback()


def spend_log_columns(connection: psycopg.Connection, database: Database) -> frozenset[str]:
    """The table's columns; a clear error when the table is not there."""
    try:
        rows = connection.execute(queries.load("spend_logs_columns.sql")).fetchall()
    except psycopg.Error as error:
        raise _explain(" ".join(str(error).split()), error.sqlstate or "", database) from None
    if not rows:
        search_path = connection.execute("SHOW search_path").fetchone()
        raise ConfigError(
            f'{database.setting} ({database}) has no "LiteLLM_SpendLogs" table '
            f"(search_path: {search_path[0] if search_path else '?'}): point it at the LiteLLM "
            "proxy's database, or add ?schema=<name> if LiteLLM uses another schema"
        )
    return frozenset(row[0] for row in rows)


def window_query(
    connection: psycopg.Connection,
    columns: frozenset[str],
    charge_by: ChargeBy,
    window: Window,
    *,
    ended_since: dt.datetime | None = None,
) -> str:
    """`sql/spend_logs_window.sql` with its placeholders filled, ready for COPY.

    `ended_since` (aware UTC) keeps only the rows whose "endTime" is not before it.
    """
    missing = [name for name in (*REQUIRED_COLUMNS, charge_by.column) if name not in columns]
    if missing:
        raise ConfigError(
            f'"LiteLLM_SpendLogs" lacks column(s) {", ".join(missing)}: this is not a LiteLLM '
            "spend-log table, or its schema is older than LiteLLM's baseline; run the proxy's "
            "migrations (litellm-proxy-extras)"
        )
    optional = {
        name: pgsql.Identifier(name) if name in columns else pgsql.SQL(f"NULL::{kind}")
        for name, kind in OPTIONAL_COLUMNS.items()
    }
    template = pgsql.SQL(queries.load("spend_logs_window.sql"))
    query = template.format(charge_by=pgsql.Identifier(charge_by.column), **optional)
    # COPY takes no server-side parameters: bind the window edges on the client, safely quoted.
    ended = ended_since.astimezone(dt.UTC).replace(tzinfo=None) if ended_since else DISTANT_PAST
    return psycopg.ClientCursor(connection).mogrify(
        query, {"since": window.naive_since, "until": window.naive_until, "ended_since": ended}
    )


def read_window(
    connection: psycopg.Connection,
    database: Database,
    charge_by: ChargeBy,
    window: Window,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ended_since: dt.datetime | None = None,
) -> Iterator[pa.Table]:
    """Yield the window's rows in chunks of about `chunk_rows`, in `"startTime"` order.

    A chunk never splits one `"startTime"` millisecond: rows that share it (and so may share
    a transaction id's inputs) always arrive together. `ended_since`: see `window_query`.
    """
    columns = spend_log_columns(connection, database)
    query = window_query(connection, columns, charge_by, window, ended_since=ended_since)
    pending: pa.Table | None = None
    statement = f"COPY ({query}) TO STDOUT (FORMAT csv)"
    for data, rows in _copy_out(connection, statement, chunk_rows, database):
        if pending is None:
            pending = _parse(data, rows)
            continue
        # More rows follow: hold back the last millisecond, which may go on in them.
        head, carry = _split_last_millisecond(pending)
        if head.num_rows:
            yield head
        pending = pa.concat_tables([carry, _parse(data, rows)])
    if pending is not None:
        yield pending


def _split_last_millisecond(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    start_ms = table.column("start_ms").to_numpy()
    cut = int(np.searchsorted(start_ms, start_ms[-1], side="left"))
    return table.slice(0, cut), table.slice(cut)


def _parse(data: bytearray, rows: int) -> pa.Table:
    # COPY sends one line per row: more newlines than rows means a value holds a newline.
    multiline = data.count(b"\n") != rows
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=_CSV_READ,
        parse_options=_CSV_PARSE_MULTILINE if multiline else _CSV_PARSE,
        convert_options=_CSV_CONVERT,
    )


def _copy_out(
    connection: psycopg.Connection, statement: str, chunk_rows: int, database: Database
) -> Iterator[tuple[bytearray, int]]:
    """Run a COPY ... TO STDOUT; yield its output `chunk_rows` rows at a time, with the count.

    This drives libpq directly and copies each row into one buffer at once: psycopg's `Copy`
    iterator, or keeping libpq's per-row buffers, costs microseconds a row, most of the
    job's time on a million rows. A server silent for the database's `silence_limit` is
    taken for a dead connection: SourceUnavailable, and the connection is closed.
    """
    pgconn = connection.pgconn
    get_copy_data = pgconn.get_copy_data
    silence = database.silence_limit
    ended = dead = False
    try:  # from the query on: a signal may land anywhere, even with the COPY's end unread
        pgconn.send_query(statement.encode())
        started = pgconn.get_result()
        if started is None or started.status != pq.ExecStatus.COPY_OUT:
            _drain(pgconn)
            raise _read_failure(started, pgconn, database)
        finished = False
        while not finished:
            chunk = bytearray()
            rows = 0
            while rows < chunk_rows:
                # Without blocking: a half-dead connection must not hang the read for ever.
                size, data = get_copy_data(1)
                if size == 0:
                    if not select.select([pgconn.socket], [], [], silence)[0]:
                        dead = True
                        raise SourceUnavailable(
                            f"the spend-log database sent nothing for {silence:.0f} s in the "
                            "middle of a read (statement timeout plus connect timeout): the "
                            "connection is dead or stalled; check the network path to Postgres "
                            "(proxies, NAT), or raise --db-statement-timeout"
                        )
                    pgconn.consume_input()
                    continue
                if size < 0:
                    finished = True
                    break
                chunk += data
                rows += 1
            if rows:
                yield chunk, rows
        result = pgconn.get_result()
        _drain(pgconn)
        ended = True
    except psycopg.OperationalError as error:
        dead = True
        raise SourceUnavailable(
            f"the connection to the spend-log database broke: {error}"
        ) from None
    finally:
        if dead:
            connection.close()  # cancelling or draining would wait on the dead peer
        elif not ended:
            _abandon_copy(connection)
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        raise _read_failure(result, pgconn, database)


def _abandon_copy(connection: psycopg.Connection) -> None:
    """End a COPY its reader left (stopped early, or between its last row and its end).

    Whatever libpq still holds is read and dropped, so the transaction can roll back.
    """
    pgconn = connection.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    connection.cancel_safe()
    while (result := pgconn.get_result()) is not None:
        if result.status == pq.ExecStatus.COPY_OUT:  # still sending rows: take them to the end
            while pgconn.get_copy_data(0)[0] >= 0:
                pass


def _drain(pgconn: pq.abc.PGconn) -> None:
    while pgconn.get_result() is not None:
        pass


def _read_failure(
    result: pq.abc.PGresult | None, pgconn: pq.abc.PGconn, database: Database
) -> ReconcileError:
    if result is None:
        message = pgconn.get_error_message().strip() or "the server closed the connection"
        return SourceUnavailable(f"reading spend logs failed: {message}")
    message = " ".join(result.get_error_message().split())
    sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    return _explain(message, sqlstate, database)


def _explain(message: str, sqlstate: str, database: Database) -> ReconcileError:
    if sqlstate == "42501":
        return ConfigError(
            f"reading spend logs was refused ({message}): grant the reader SELECT on "
            '"LiteLLM_SpendLogs" (see sql/readonly_role.sql)'
        )
    if sqlstate == "57014":
        where = (
            f"raise statement_timeout in {database.setting}'s options (it sets its own, so "
            "--db-statement-timeout does not apply)"
            if database.sets_statement_timeout
            else "raise --db-statement-timeout (RECONCILE_DB_STATEMENT_TIMEOUT; 0 means none)"
        )
        return SourceError(
            f"reading spend logs was cancelled ({message}): {where}, or read a shorter window"
        )
    if sqlstate.startswith("08"):
        return SourceUnavailable(f"the connection to the spend-log database broke: {message}")
    return SourceError(f"reading spend logs failed: {message}")
