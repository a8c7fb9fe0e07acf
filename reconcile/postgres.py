"""Postgres URLs as LiteLLM users write them, and connections whose failures explain themselves."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import logging
import math
import socket
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reconcile.errors import ConfigError, ReconcileError, SourceError, SourceUnavailable
from reconcile.window import duration_ms

log = logging.getLogger(__name__)

_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}
# Query parameters Prisma (LiteLLM's ORM) understands and libpq does not.
_PRISMA_ONLY = {
    "schema",
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "socket_timeout",
    "statement_cache_size",
    "sslaccept",
    "sslidentity",
}
_URL_PARTS = ("user", "password", "host", "port", "dbname")
#: libpq parameters used where the URL gives none. Keepalives notice a peer gone silent while
#: we wait (30 s idle, then 3 probes 10 s apart); tcp_user_timeout (ms) while we send.
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "reconcile",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}
DEFAULT_CONNECT_TIMEOUT = dt.timedelta(seconds=10)
DEFAULT_STATEMENT_TIMEOUT = dt.timedelta(minutes=15)
# Values libpq accepts for its enumerated parameters, checked before connecting so that a typo
# is a configuration error naming the parameter, not a failed connection.
_CHOICES = {
    "sslmode": {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
    "gssencmode": {"disable", "prefer", "require"},
    "channel_binding": {"disable", "prefer", "require"},
    "sslnegotiation": {"postgres", "direct"},
    "sslcertmode": {"disable", "allow", "require"},
    "target_session_attrs": {
        "any", "read-write", "read-only", "primary", "standby", "prefer-standby"
    },
    "load_balance_hosts": {"disable", "random"},
    "keepalives": {"0", "1"},
}  # fmt: skip
_INTEGERS = (
    "connect_timeout",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


@dataclasses.dataclass(frozen=True)
class Database:
    """A Postgres to connect to: libpq parameters, and the setting they came from."""

    params: Mapping[str, str] = dataclasses.field(repr=False)
    setting: str = "DATABASE_URL"
    #: Prisma's `?schema=`: the search_path LiteLLM's tables live in.
    schema: str | None = None
    #: Prisma's `?pgbouncer=true`: a pooler in transaction mode, where session locks do not hold.
    pgbouncer: bool = False
    #: libpq parameters for what the URL leaves unsaid (timeouts, keepalives); never printed.
    defaults: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: dict(CONNECT_DEFAULTS), repr=False
    )
    #: Set on each connection unless the URL's `options` set one; zero: none.
    statement_timeout: dt.timedelta = DEFAULT_STATEMENT_TIMEOUT

    def url(self, *, hide_password: bool = False) -> str:
        """A postgresql:// URL for these parameters (masked: safe to print)."""
        params = self.params
        user = quote(params.get("user", ""), safe="")
        if params.get("password"):
            user += ":" + ("***" if hide_password else quote(params["password"], safe=""))
        host = params.get("host", "")
        query = {key: value for key, value in params.items() if key not in _URL_PARTS}
        if host.startswith("/") or "," in host:  # sockets and host lists go in the query
            query = {"host": host, **query}
            host = ""
        elif ":" in host:
            host = f"[{host}]"
        if params.get("port") and host:
            host += f":{params['port']}"
        elif params.get("port"):
            query = {"port": params["port"], **query}
        if self.schema:
            query["schema"] = self.schema
        netloc = f"{user}@{host}" if user else host
        tail = f"?{urlencode(query, quote_via=quote)}" if query else ""
        return f"postgresql://{netloc}/{quote(params.get('dbname', ''), safe='')}{tail}"

    def __str__(self) -> str:
        return self.url(hide_password=True)

    @property
    def name(self) -> str:
        """The database name."""
        return self.params.get("dbname", "")

    def replace(self, **params: str) -> Database:
        """The same server with some parameters changed (dbname, user, password...)."""
        return dataclasses.replace(self, params={**self.params, **params})

    def with_timeouts(self, *, connect: dt.timedelta, statement: dt.timedelta) -> Database:
        """These timeouts where the URL gives none; zero means none (wait for ever)."""
        seconds = str(math.ceil(connect.total_seconds()))
        return dataclasses.replace(
            self,
            defaults={**self.defaults, "connect_timeout": seconds},
            statement_timeout=statement,
        )

    @property
    def libpq_params(self) -> dict[str, str]:
        """Every libpq parameter a connection uses: the URL's, then the defaults."""
        return {**self.defaults, **self.params}

    @property
    def sets_statement_timeout(self) -> bool:
        """Whether the URL sets statement_timeout itself (`?options=-c statement_timeout=...`)."""
        return "statement_timeout" in self.params.get("options", "")

    @property
    def silence_limit(self) -> float | None:
        """Seconds a reader may wait on a silent server before taking the connection for dead.

        Past the statement timeout the server would have answered with an error; the connect
        timeout is the network's allowance on top. None: no statement timeout, no limit.
        """
        if self.sets_statement_timeout or not self.statement_timeout:
            return None
        allowance = int(self.libpq_params.get("connect_timeout") or 0) or 10
        return self.statement_timeout.total_seconds() + allowance


def parse_database_url(raw: str | None, *, setting: str = "DATABASE_URL") -> Database:
    """Accept `postgresql://` and `postgres://` URLs, Prisma's parameters included."""
    if raw is None or not raw.strip():
        raise ConfigError(
            f"{setting} is not set: give the LiteLLM proxy's database, "
            "e.g. postgresql://user:password@host:5432/litellm"
        )
    invalid = ConfigError(
        f"{setting} is not a valid URL: write it as postgresql://user:password@host:5432/dbname "
        "(percent-encode special characters in the password, e.g. @ as %40)"
    )
    scheme, separator, rest = raw.strip().partition("://")
    if not separator:
        raise invalid
    if scheme.lower() not in _SCHEMES:
        raise ConfigError(
            f"{setting} is a {scheme!r} URL: reconcile reads LiteLLM's PostgreSQL database; "
            "give a postgresql:// URL"
        )
    base, _, query = rest.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    schema = next((value for key, value in pairs if key == "schema"), None)
    pgbouncer = any(key == "pgbouncer" and value.lower() == "true" for key, value in pairs)
    kept = [(key, value) for key, value in pairs if key not in _PRISMA_ONLY]
    if dropped := sorted({key for key, _ in pairs} & _PRISMA_ONLY - {"schema"}):
        log.debug("ignoring Prisma-only URL parameters: %s", ", ".join(dropped))
    try:
        params = conninfo_to_dict(
            f"postgresql://{base}" + (f"?{urlencode(kept, quote_via=quote)}" if kept else "")
        )
    except psycopg.ProgrammingError as error:
        reason = str(error).strip().splitlines()[0]
        if "query parameter" in reason:
            raise ConfigError(
                f"{setting} has an invalid parameter ({reason}): remove it or fix its spelling"
            ) from None
        raise invalid from None
    if not all(part.isdigit() for part in str(params.get("port", "0")).split(",")):
        raise invalid
    for key, value in params.items():
        choices = _CHOICES.get(key)
        if (choices and str(value) not in choices) or (
            key in _INTEGERS and not str(value).isdigit()
        ):
            expected = ", ".join(sorted(choices)) if choices else "a whole number"
            raise ConfigError(f"{setting} has an invalid parameter {key}={value!r}: use {expected}")
    return Database(
        params={key: str(value) for key, value in params.items()},
        setting=setting,
        schema=schema,
        pgbouncer=pgbouncer,
    )


def open_connection(database: Database, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection in UTC with exact float output, or an error that names the fix.

    The one place connections are configured: `connect` and the SQLAlchemy engine
    (reconcile/engine.py) both open theirs here.
    """
    conninfo = make_conninfo(**database.libpq_params)
    try:
        connection = psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.Error as error:
        raise _explain_connect_failure(database, error) from None
    if database.pgbouncer:  # a pooled server connection may not hold this one's statements
        connection.prepare_threshold = None
    try:
        with _timeouts_named(database), connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            if not database.sets_statement_timeout:
                milliseconds = duration_ms(database.statement_timeout)
                cursor.execute(f"SET statement_timeout = {milliseconds:d}")
            # Doubles print exactly (shortest round-trip digits): costs keep every digit.
            cursor.execute("SET extra_float_digits = 3")
            if database.schema:
                path = sql.SQL("SET search_path TO {}").format(sql.Identifier(database.schema))
                cursor.execute(path)
    except BaseException:
        connection.close()
        raise
    if not autocommit:
        connection.commit()
    return connection


@contextlib.contextmanager
def connect(database: Database, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open a connection (see `open_connection`), closed when the block ends."""
    with open_connection(database, autocommit=autocommit) as connection, _timeouts_named(database):
        yield connection


@contextlib.contextmanager
def _timeouts_named(database: Database) -> Iterator[None]:
    """A statement cancelled by statement_timeout (57014), wherever no caller explained it."""
    try:
        yield
    except psycopg.errors.QueryCanceled as error:
        raise SourceError(
            f"{database.setting} ({database}): a statement was cancelled "
            f"({' '.join(str(error).split())}): raise statement_timeout (the URL's options, "
            "the role's setting, or --db-statement-timeout); running again is safe"
        ) from None


def server_identity(database: Database) -> str:
    """What the server says this database is, whatever the URL's spelling.

    The cluster's system identifier (the same on its streaming replicas) and the database's
    name: `cluster:7714143092172359798/litellm`. Where the role may not read the identifier,
    the server's own address and port: `server:10.0.0.5:5432/litellm` (`server:local:...` for
    loopback and Unix sockets). It names a run's source in the ledger and keys its lock.
    """
    with connect(database, autocommit=True) as connection:
        name = connection.execute("SELECT current_database()").fetchone()
        try:
            row = connection.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            row = None
        if row and row[0] is not None:
            return f"cluster:{row[0]}/{name[0] if name else ''}"
        found = connection.execute(
            "SELECT host(inet_server_addr()), coalesce(inet_server_port(), "
            "current_setting('port')::int)"
        ).fetchone()
    address, port = found if found else (None, None)
    if address is None or ipaddress.ip_address(address).is_loopback:
        address = "local"
    return f"server:{address}:{port}/{name[0] if name else ''}"


def _explain_connect_failure(database: Database, error: psycopg.Error) -> ReconcileError:
    """A failed connection, classified by psycopg's error class and the server's SQLSTATE."""
    where = f"{database.setting} ({database})"
    text = " ".join(str(error).split())
    if isinstance(error, psycopg.ProgrammingError):
        return ConfigError(f"{where} is not a valid connection string ({text}): fix the URL")
    if isinstance(error, psycopg.errors.ConnectionTimeout):
        timeout = database.libpq_params.get("connect_timeout")
        return SourceUnavailable(
            f"{where}: no answer within {timeout} s (connect timeout): check that Postgres is "
            "running and reachable, or raise --db-connect-timeout"
        )
    if isinstance(error.__cause__ or error.__context__, socket.gaierror) or (
        "failed to resolve host" in text  # psycopg's own resolver drops the gaierror
    ):
        return ConfigError(f"{where}: the host name does not resolve: fix the host")
    if (refused := _libpq_refusal(where, text)) is not None:
        return refused
    # libpq keeps no SQLSTATE for a refused connection (no result, and psycopg cannot make
    # its messages verbose): the server's FATAL reasons for 28P01, 28000 and 3D000 stand in.
    refusals = (
        ("password authentication failed", "the password was refused: fix the user or password"),
        ("no password supplied", "the server asks for a password: add it to the URL"),
        ("does not exist", f"{_reason(text)}: fix the user or database name"),
        ("no pg_hba.conf entry", "the server refuses this client: allow it in pg_hba.conf"),
    )
    if "FATAL:" in text:
        for needle, explanation in refusals:
            if needle in text:
                return ConfigError(f"{where}: {explanation}")
    return SourceUnavailable(
        f"{where}: cannot connect ({_reason(text)}): check that Postgres is running "
        "and that the host and port are right"
    )


#: libpq's refusals of a connection option, before it connects: no SQLSTATE, no server.
_INVALID_OPTIONS = (
    "invalid port number",  # out of 1..65535
    "for connection option",  # invalid integer value "x" for connection option "port"
    ' value: "',  # invalid sslmode value: "x" (and gssencmode, channel_binding, ...)
    "port numbers to",  # could not match 3 port numbers to 2 hosts
    "host names to",  # could not match 2 host names to 1 hostaddr values
    "could not parse network address",  # hostaddr is no IP address
)


def _libpq_refusal(where: str, text: str) -> ConfigError | None:
    """A connection option libpq itself refused (no SQLSTATE: its words stand in); else None."""
    if "SSL" in text:  # libpq's check of sslmode against the server
        return ConfigError(f"{where}: {_reason(text)}: adjust sslmode in the URL")
    if "FATAL:" in text:  # the server's refusal, not libpq's
        return None
    if "invalid port number" in text or 'option "port"' in text:
        return ConfigError(
            f"{where}: {_reason(text)}: give a port from 1 to 65535 (Postgres' default is "
            "5432) in the URL, or in PGPORT if the URL has none"
        )
    if any(needle in text for needle in _INVALID_OPTIONS):
        return ConfigError(
            f"{where}: {_reason(text)}: fix that option in the URL, or in the PG* environment "
            "variable libpq read it from"
        )
    return None


def _reason(text: str) -> str:
    text = text.removeprefix("connection is bad: ")  # psycopg's, before libpq's own words
    _, _, reason = text.rpartition("FATAL:")
    _, _, reason = reason.rpartition("failed:")
    return reason.strip() or text
