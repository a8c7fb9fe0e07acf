"""One SQLAlchemy engine per database, its connections opened the one way postgres.py does."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from reconcile.postgres import Database, open_connection


def engine(database: Database) -> Engine:
    """An engine whose connections are `open_connection`'s: timeouts, keepalives, SSL, UTC.

    Its URL names the database (masked by `render_as_string(hide_password=True)`, as
    `str(engine.url)` is); the creator opens every connection, so the URL's parameters are
    never parsed a second way. No pool: a command opens a connection or two and ends.
    """
    params = database.libpq_params
    url = URL.create(
        "postgresql+psycopg",
        username=params.get("user") or None,
        password=params.get("password") or None,
        host=params.get("host") or None,
        port=int(params["port"]) if params.get("port", "").isdigit() else None,
        database=params.get("dbname") or None,
    )
    return sa.create_engine(
        url,
        creator=lambda: open_connection(database),
        poolclass=NullPool,
        # Run settings hold dates and paths: written as text, as they always were.
        json_serializer=lambda value: json.dumps(value, default=str),
    )


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """The psycopg exception for what SQLAlchemy wrapped, so one handler reads both."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        if isinstance(error.orig, psycopg.Error):
            raise error.orig from None
        raise
