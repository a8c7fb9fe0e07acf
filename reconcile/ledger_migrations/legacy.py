"""Ledgers made by reconcile's old migration runner: stamped with the revision they match."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from reconcile import queries

#: The old runner's record: one row per applied sql/ledger/NNN_*.sql file. Each revision's id
#: is that file's name without `.sql`, so the record names the revision to stamp.
OLD_TABLE = "schema_migrations"


def stamp(migration: MigrationContext, script: ScriptDirectory, schema: str) -> str | None:
    """Stamp a ledger the old runner made with its newest revision; the revision, or None.

    Only when Alembic has no version for it yet. The old record stays, untouched.
    """
    if migration.get_current_heads() or migration.connection is None:
        return None
    newest = matched(migration.connection, schema, [
        revision.revision for revision in reversed(list(script.walk_revisions("base", "heads")))
    ])  # fmt: skip
    if newest is not None:
        migration.stamp(script, newest)
    return newest


def matched(connection: sa.Connection, schema: str, revisions: list[str]) -> str | None:
    """The newest of `revisions` (oldest first) the old runner's record says it applied, if any.

    Reads only.
    """
    found = connection.execute(
        sa.text("SELECT to_regclass(:name) IS NOT NULL"),
        {"name": f"{queries.schema_identifier(schema)}.{OLD_TABLE}"},
    ).scalar()
    if not found:
        return None
    old = sa.table(OLD_TABLE, sa.column("name"), schema=schema)
    applied = {row[0].removesuffix(".sql") for row in connection.execute(sa.select(old.c.name))}
    newest = None
    for revision in revisions:
        if revision not in applied:
            break
        newest = revision
    return newest


def offline_stamp(schema: str, revision: str) -> list[str]:
    """SQL that stamps `revision` on a ledger without Alembic's version table (else nothing).

    For a DBA's script from a ledger the old runner made: the upgrade that follows finds the
    version it expects.
    """
    quoted = queries.schema_identifier(schema)
    literal = "'" + revision.replace("'", "''") + "'"
    return [
        f"CREATE TABLE IF NOT EXISTS {quoted}.alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
        f"INSERT INTO {quoted}.alembic_version (version_num) SELECT {literal} "
        f"WHERE NOT EXISTS (SELECT FROM {quoted}.alembic_version)",
    ]
