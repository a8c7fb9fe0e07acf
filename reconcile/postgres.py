"""Postgres URLs as LiteLLM users write them, and connections whose failures explain themselves."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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
CONNECT_TIMEOUT_SECONDS = 10


@dataclasses.dataclass(frozen=True)
class Database:
    """A parsed Postgres URL; its text forms never show the password."""

    url: sa.URL
    schema: str | None
    setting: str
    display: str = dataclasses.field(compare=False)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Database({self!s}, setting={self.setting!r})"

    def with_database(self, name: str) -> Database:
        """The same server and credentials, another database on it."""
        display = _display(make_url(self.display).set(database=name))
        return dataclasses.replace(self, url=self.url.set(database=name), display=display)


def parse_database_url(raw: str | None, *, setting: str = "DATABASE_URL") -> Database:
    """Accept `postgresql://` and `postgres://` URLs, Prisma parameters included."""
    if raw is None or not raw.strip():
        raise ConfigError(
            f"{setting} is not set: give the LiteLLM proxy's database, "
            "e.g. postgresql://user:password@host:5432/litellm"
        )
    try:
        url = make_url(raw.strip())
        url.port  # noqa: B018  (parsing the port is deferred until it is read)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{setting} is not a valid URL: write it as "
            "postgresql://user:password@host:5432/dbname (percent-encode special characters "
            "in the password, e.g. @ as %40)"
        ) from None
    if url.drivername not in _SCHEMES:
        raise ConfigError(
            f"{setting} is a {url.drivername!r} URL: reconcile reads LiteLLM's PostgreSQL "
            "database; give a postgresql:// URL"
        )
    query = dict(url.query)
    schema = query.get("schema")
    dropped = sorted(key for key in query if key in _PRISMA_ONLY)
    if dropped:
        log.debug("ignoring Prisma-only URL parameters: %s", ", ".join(dropped))
    kept = {key: value for key, value in query.items() if key not in _PRISMA_ONLY}
    display = _display(url.set(drivername="postgresql"))
    kept.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    kept.setdefault("application_name", "reconcile")
    url = url.set(drivername="postgresql+psycopg", query=kept)
    return Database(
        url=url,
        schema=schema if isinstance(schema, str) else None,
        setting=setting,
        display=display,
    )


def _display(url: sa.URL) -> str:
    """The URL as the user wrote it, password masked (an empty password shows as nothing)."""
    if not url.password:
        url = url._replace(password=None)
    return url.render_as_string(hide_password=True)


def conninfo(database: Database) -> str:
    """The libpq connection string psycopg and psql take (it holds the password: never log it)."""
    return database.url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def connect(database: Database, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open a connection in UTC with exact float output, or raise an error that names the fix."""
    try:
        connection = psycopg.connect(conninfo(database), autocommit=autocommit)
    except psycopg.ProgrammingError as error:
        raise ConfigError(
            f"{database.setting} ({database}) has an invalid parameter: "
            f"{_first_line(error)}; remove it or fix its spelling"
        ) from None
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


def _explain_connect_failure(database: Database, error: psycopg.OperationalError) -> Exception:
    text = " ".join(str(error).split())
    where = f"{database.setting} ({database})"
    config_failures = (
        ("password authentication failed", "the password was refused: fix the user or password"),
        ("no password supplied", "the server asks for a password: add it to the URL"),
        ("does not exist", f"{_after_fatal(text)}: fix the user or database name"),
        ("no pg_hba.conf entry", "the server refuses this client: allow it in pg_hba.conf"),
        ("SSL", f"{_after_fatal(text)}: adjust sslmode in the URL"),
        ("could not translate host name", "the host name does not resolve: fix the host"),
    )
    for needle, explanation in config_failures:
        if needle in text:
            return ConfigError(f"{where}: {explanation}")
    return SourceUnavailable(
        f"{where}: cannot connect ({_after_fatal(text)}): check that Postgres is running "
        "and that the host and port are right"
    )


def _after_fatal(text: str) -> str:
    _, _, reason = text.rpartition("FATAL:")
    _, _, reason = reason.rpartition("failed:")
    return reason.strip() or text


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
