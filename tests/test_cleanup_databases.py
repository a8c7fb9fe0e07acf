"""The cleanup the README offers for what the tests leave on their Postgres."""

import uuid

from cleanup_databases import cleanup
from psycopg import sql

from reconcile.postgres import Database, connect


def test_the_cleanup_drops_unused_databases_and_leaves_ones_in_use(pg_admin: Database) -> None:
    prefix = f"reconcile_cleanup_{uuid.uuid4().hex[:8]}_"
    with connect(pg_admin, autocommit=True) as connection:
        for suffix in ("idle", "busy"):
            name = sql.Identifier(prefix + suffix)
            connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    with connect(pg_admin.replace(dbname=prefix + "busy")):
        dropped, in_use = cleanup(pg_admin, [prefix])
    assert (dropped, in_use) == ([prefix + "idle"], [prefix + "busy"])
    assert cleanup(pg_admin, [prefix]) == ([prefix + "busy"], [])
