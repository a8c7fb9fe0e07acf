"""Postgres URLs as LiteLLM users write them, and connections whose failures explain themselves."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reconcile.errors import ConfigError, SourceUnavailable

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
CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "reconcile"}


@dataclasses.dataclass(frozen=True)
class Database:
    """A Postgres to connect to: libpq parameters, and the setting they came from."""

    params: Mapping[str, str] = dataclasses.field(repr=False)
    setting: str = "DATABASE_URL"
    #: Prisma's `?schema=`: the search_path LiteLLM's tables live in.
    schema: str | None = None

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
        tail = f"?{urlencode(query)}" if query else ""
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
    kept = [(key, value) for key, value in pairs if key not in _PRISMA_ONLY]
    if dropped := sorted({key for key, _ in pairs} & _PRISMA_ONLY - {"schema"}):
        log.debug("ignoring Prisma-only URL parameters: %s", ", ".join(dropped))
    try:
        params = conninfo_to_dict(f"postgresql://{base}" + (f"?{urlencode(kept)}" if kept else ""))
    except psycopg.ProgrammingError as error:
        reason = str(error).strip().splitlines()[0]
        if "query parameter" in reason:
            raise ConfigError(
                f"{setting} has an invalid parameter ({reason}): remove it or fix its spelling"
            ) from None
        raise invalid from None
    if not all(part.isdigit() for part in str(params.get("port", "0")).split(",")):
        raise invalid
    return Database(
        params={key: str(value) for key, value in params.items()}, setting=setting, schema=schema
    )


@contextlib.contextmanager
def connect(database: Database, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open a connection in UTC with exact float output, or raise an error that names the fix."""
    try:
        connection = psycopg.connect(
            make_conninfo(**{**CONNECT_DEFAULTS, **database.params}), autocommit=autocommit
        )
    except psycopg.OperationalError as error:
        raise _explain_connect_failure(database, error) from None
    with connection:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            # Doubles print exactly (shortest round-trip digits): costs keep every digit.
            cursor.execute("SET extra_float_digits = 3")
            if database.schema:
                cursor.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(database.schema))
                )
        if not autocommit:
            connection.commit()
        yield connection


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


def _explain_connect_failure(database: Database, error: psycopg.OperationalError) -> Exception:
    text = " ".join(str(error).split())
    where = f"{database.setting} ({database})"
    config_failures = (
        ("password authentication failed", "the password was refused: fix the user or password"),
        ("no password supplied", "the server asks for a password: add it to the URL"),
        ("does not exist", f"{_reason(text)}: fix the user or database name"),
        ("no pg_hba.conf entry", "the server refuses this client: allow it in pg_hba.conf"),
        ("SSL", f"{_reason(text)}: adjust sslmode in the URL"),
        ("failed to resolve host", "the host name does not resolve: fix the host"),
        ("could not translate host name", "the host name does not resolve: fix the host"),
    )
    for needle, explanation in config_failures:
        if needle in text:
            return ConfigError(f"{where}: {explanation}")
    return SourceUnavailable(
        f"{where}: cannot connect ({_reason(text)}): check that Postgres is running "
        "and that the host and port are right"
    )


def _reason(text: str) -> str:
    _, _, reason = text.rpartition("FATAL:")
    _, _, reason = reason.rpartition("failed:")
    return reason.strip() or text
