"""Drop what the tests leave on their Postgres: the LiteLLM schema templates and stray test databases.

The tests clone each database from one template per schema version (`litellm_schema_*`),
kept on purpose so that the next run starts in seconds, and drop every `reconcile_test_*`
clone after its test (a killed run can leave some). Run it from the repository root:

    .venv/bin/python tests/cleanup_databases.py

It uses the server the tests use (TEST_DATABASE_URL, else 127.0.0.1:5432) and drops only
databases nobody is connected to.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import psycopg
from psycopg import sql

from reconcile.postgres import Database, connect
from reconcile.testing.embedded import any_postgres

PREFIXES = ("litellm_schema_", "reconcile_test_")


def cleanup(admin: Database, prefixes: Sequence[str] = PREFIXES) -> tuple[list[str], list[str]]:
    """Drop the unused databases whose names start with `prefixes`: (dropped, left in use)."""
    dropped, in_use = [], []
    with connect(admin, autocommit=True) as connection:
        names = [
            name
            for (name,) in connection.execute("SELECT datname FROM pg_database ORDER BY datname")
            if name.startswith(tuple(prefixes))
        ]
        for name in names:
            try:
                connection.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
                dropped.append(name)
            except psycopg.errors.ObjectInUse:
                in_use.append(name)
    return dropped, in_use


def main() -> int:
    with any_postgres() as admin:
        dropped, in_use = cleanup(admin)
    for name in dropped:
        print(f"dropped {name}")
    for name in in_use:
        print(f"left {name}: in use (a test run is going on?)", file=sys.stderr)
    if not dropped and not in_use:
        print("nothing to drop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
