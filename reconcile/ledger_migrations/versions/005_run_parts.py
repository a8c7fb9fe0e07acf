"""A run's window in parts, each leased to one worker at a time; slices committed per part.

A row per part of a run: its stretch of the window, who works on it and until when the lease
holds (a worker renews it while alive; an expired one is claimed again by another worker),
and, once done, what it added up to. Leases replace the session advisory lock, so the job
runs behind PgBouncer's transaction pooling and any number of workers share one window.

Revision ID: 005_run_parts
Revises: 004_run_slices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from reconcile.ledger_migrations import state_schema

revision = "005_run_parts"
down_revision = "004_run_slices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create run_parts; key run_slices by part."""
    schema = state_schema()
    op.create_table(
        "run_parts",
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey(f"{schema}.runs.id"), nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("state", JSONB),
        sa.PrimaryKeyConstraint("run_id", "part"),
        schema=schema,
    )
    op.add_column(
        "run_slices",
        sa.Column("part", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.drop_constraint("run_slices_pkey", "run_slices", schema=schema)
    op.create_primary_key(
        "run_slices_pkey", "run_slices", ["run_id", "part", "slice"], schema=schema
    )


def downgrade() -> None:
    """Drop run_parts; run_slices keyed by run and slice again (part 0's kept)."""
    schema = state_schema()
    op.execute(f'DELETE FROM "{schema}".run_slices WHERE part <> 0')
    op.drop_constraint("run_slices_pkey", "run_slices", schema=schema)
    op.drop_column("run_slices", "part", schema=schema)
    op.create_primary_key("run_slices_pkey", "run_slices", ["run_id", "slice"], schema=schema)
    op.drop_table("run_parts", schema=schema)
