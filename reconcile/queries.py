"""The SQL files of `sql/`, read from wherever the package is installed."""

import re
from importlib.resources import files

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load(name: str) -> str:
    """The text of `sql/<name>`."""
    return files("reconcile.sql").joinpath(name).read_text(encoding="utf-8")


def named(name: str, *, schema: str) -> dict[str, str]:
    """The "-- name:" blocks of `sql/<name>`, with {schema} as a quoted identifier."""
    text = load(name).replace("{schema}", sql.Identifier(schema).as_string())
    parts = _NAME.split(text)
    return {parts[index]: parts[index + 1].strip() for index in range(1, len(parts), 2)}
