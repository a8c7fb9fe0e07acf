"""The SQL files of `sql/`, read from wherever the package is installed."""

import functools
import re
import unicodedata
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from psycopg import sql

from reconcile.errors import ConfigError

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def sql_dir() -> Traversable:
    """The `sql/` folder: the installed package data `reconcile.sql`, else the repository's.

    The repository's `./reconcile` shadows an installed package when Python runs from the
    repository root (`python -m reconcile`); the SQL is then in `sql/` beside it, where
    setuptools' package-dir took it from.
    """
    try:
        return files("reconcile.sql")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "sql"


def load(name: str) -> str:
    """The text of `sql/<name>`."""
    return sql_dir().joinpath(name).read_text(encoding="utf-8")


def schema_identifier(schema: str) -> str:
    """A schema name as a quoted SQL identifier; ConfigError for one no file may hold.

    The name is written into the SQL files, comments included: a control character (a
    newline) would end a comment and run what follows, so none is accepted.
    """
    if not schema or len(schema.encode()) > 63:
        raise ConfigError(
            f"--state-schema {schema!r} is not a schema name: give 1 to 63 bytes, "
            "e.g. litellm_reconcile"
        )
    if any(unicodedata.category(char).startswith("C") for char in schema):
        raise ConfigError(
            f"--state-schema {schema!r} contains control characters: give a plain name, "
            "e.g. litellm_reconcile"
        )
    if schema.startswith("pg_"):
        raise ConfigError(
            f"--state-schema {schema!r}: names starting with pg_ are reserved by Postgres: "
            "give another, e.g. litellm_reconcile"
        )
    return sql.Identifier(schema).as_string()


def schema_shown(schema: str) -> str:
    """A schema name for messages, as SQL one may paste: bare when plain, else quoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        return schema
    try:
        return schema_identifier(schema)
    except ConfigError:
        return repr(schema)


def named(name: str, *, schema: str | None = None) -> dict[str, str]:
    """The "-- name:" blocks of `sql/<name>`, with {schema} (if given) a quoted identifier."""
    text = load(name)
    if schema is not None:
        text = text.replace("{schema}", schema_identifier(schema))
    parts = _NAME.split(text)
    return {parts[index]: parts[index + 1].strip() for index in range(1, len(parts), 2)}
