"""The SQL files of `sql/`, read from wherever the package is installed."""

import re
import unicodedata
from importlib.resources import files

from psycopg import sql

from reconcile.errors import ConfigError

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load(name: str) -> str:
    """The text of `sql/<name>`."""
    return files("reconcile.sql").joinpath(name).read_text(encoding="utf-8")


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
    return sql.Identifier(schema).as_string()


def named(name: str, *, schema: str) -> dict[str, str]:
    """The "-- name:" blocks of `sql/<name>`, with {schema} as a quoted identifier."""
    text = load(name).replace("{schema}", schema_identifier(schema))
    parts = _NAME.split(text)
    return {parts[index]: parts[index + 1].strip() for index in range(1, len(parts), 2)}
