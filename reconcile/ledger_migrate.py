"""`reconcile migrate`: Alembic's upgrade of the ledger, under a lock, in one transaction."""

from __future__ import annotations

import dataclasses
import io
from importlib.resources import as_file, files
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from reconcile import queries
from reconcile.engine import driver_errors, engine
from reconcile.errors import ConfigError
from reconcile.ledger import DEFAULT_SCHEMA, explained, lock_key, stamped_revision
from reconcile.ledger_migrations import legacy
from reconcile.ledger_revisions import revisions
from reconcile.postgres import Database


@dataclasses.dataclass(frozen=True)
class Migrated:
    """What `migrate` did: the revision it stamped an old runner's ledger with, what it applied."""

    stamped: str | None
    applied: list[str]


def migrate(database: Database, schema: str = DEFAULT_SCHEMA) -> Migrated:
    """`alembic upgrade head` in one transaction; what it stamped and applied now.

    Concurrent calls take turns (a transaction advisory lock keyed on the schema): the second
    finds the ledger at head and applies nothing. A ledger the old runner made (its
    `schema_migrations` table) is first stamped with the revision it matches.
    """
    quoted = queries.schema_identifier(schema)
    applied: list[str] = []
    stamped: list[str] = []
    with (
        explained(database, schema, "migrate"),
        driver_errors(),
        engine(database).connect() as connection,
    ):
        # Held until the transaction ends (so through PgBouncer's transaction pooling too).
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("migrate", schema, "")}
        )
        # Only when it is missing: CREATE SCHEMA IF NOT EXISTS needs the right to create
        # schemas even when the schema is there, and a role given its own schema has none.
        exists = sa.text("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = :schema)")
        if not connection.execute(exists, {"schema": schema}).scalar():
            connection.execute(sa.text(f"CREATE SCHEMA {quoted}"))
        _known(stamped_revision(connection, schema), database, schema)
        _run(schema, lambda config: command.upgrade(config, "head"), connection=connection,
             applied=applied, stamped=stamped)  # fmt: skip
        connection.commit()
    return Migrated(stamped[0] if stamped else None, applied)


def migration_script(schema: str = DEFAULT_SCHEMA, after: str | None = None) -> str:
    """Alembic's offline `upgrade head`: one transaction a DBA can read and apply with psql.

    From an empty ledger, or with `after` (a revision, as `migrate --check` names the ledger's
    current one) only the revisions that follow it. ConfigError for a revision there is not.
    """
    queries.schema_identifier(schema)
    if after is not None and after not in revisions():
        raise ConfigError(
            f"--from-revision {after!r} is not a revision of reconcile's ledger: use one of "
            f"{', '.join(revisions())} (`reconcile migrate --check` names the ledger's)"
        )
    target = "head" if after is None else f"{after}:head"
    buffer = io.StringIO()
    _run(schema, lambda config: command.upgrade(config, target, sql=True), output_buffer=buffer)
    return buffer.getvalue()


def current_revision(database: Database, schema: str = DEFAULT_SCHEMA) -> str | None:
    """The ledger's revision (Alembic's version table); None before any `migrate`.

    A ledger the old runner made has none until `migrate` stamps it. Reads only.
    """
    current, _ = _revisions_found(database, schema)
    _known(current, database, schema)
    return current


def legacy_revision(database: Database, schema: str = DEFAULT_SCHEMA) -> str | None:
    """For a ledger a release before Alembic made (not stamped yet): the revision it matches.

    None for any other ledger, or none. Reads only.
    """
    return _revisions_found(database, schema)[1]


def _revisions_found(database: Database, schema: str) -> tuple[str | None, str | None]:
    """Alembic's revision of the ledger, and (without one) the old runner's it matches."""
    queries.schema_identifier(schema)
    with (
        explained(database, schema, "read"),
        driver_errors(),
        engine(database).connect() as connection,
    ):
        current = stamped_revision(connection, schema)
        if current is not None:
            return current, None
        return None, legacy.matched(connection, schema, list(revisions()))


def pending(database: Database, schema: str = DEFAULT_SCHEMA) -> list[str]:
    """The revisions `migrate` would apply (oldest first); empty when the ledger is at head.

    Reads only: a role that may merely read the ledger can ask. A ledger the old runner made
    is behind until `migrate` stamps it.
    """
    current = current_revision(database, schema)
    every = revisions()
    return list(every[every.index(current) + 1 :] if current is not None else every)


def _known(current: str | None, database: Database, schema: str) -> None:
    """ConfigError for a ledger a newer release migrated: this one cannot tell what it holds."""
    if current is not None and current not in revisions():
        raise ConfigError(
            f"{database.setting} ({database}): the ledger in schema {schema} is at revision "
            f"{current!r}, which this release of reconcile does not know (a newer one migrated "
            f"it): run that release, or upgrade reconcile"
        )


def _run(schema: str, action: Any, **attributes: Any) -> None:
    """Run an Alembic command on the ledger's migrations, wherever the package is installed."""
    with as_file(files("reconcile.ledger_migrations")) as location:
        config = Config(output_buffer=attributes.pop("output_buffer", None))
        config.set_main_option("script_location", str(location))
        config.attributes.update(schema=schema, **attributes)
        action(config)
