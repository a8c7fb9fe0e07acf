"""Alembic's environment for the ledger: the schema, the advisory lock, the old runner's ledgers."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from reconcile.ledger_migrations import legacy

config = context.config
schema: str = config.attributes["schema"]
options: dict[str, Any] = {
    "version_table_schema": schema,
    # One transaction for every revision: `migrate` applies all of them or none.
    "transaction_per_migration": False,
}

if context.is_offline_mode():
    context.configure(url="postgresql+psycopg://", literal_binds=True, **options)
    with context.begin_transaction():
        context.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        start = context.get_starting_revision_argument()
        if start is not None:  # a ledger that exists; one made before Alembic is stamped first
            for statement in legacy.offline_stamp(schema, str(start)):
                context.execute(statement)
        context.run_migrations()
else:
    connection: sa.Connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        on_version_apply=lambda step, **_: config.attributes["applied"].append(step.up_revision_id),
        **options,
    )
    # `reconcile migrate` began the transaction, took the lock and made the schema.
    stamped = legacy.stamp(context.get_context(), context.script, schema)
    if stamped is not None:
        config.attributes["stamped"].append(stamped)
    context.run_migrations()
