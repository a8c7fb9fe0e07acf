"""A run records each slice it committed, so that a run cut short goes on from there.

A row per committed slice: where the run's forward pass stood after it (its frontier), the
run's counts so far and what the slice added to its per-customer lines. The next invocation
of the same command over the same window resumes the run from its last row.

Revision ID: 004_run_slices
Revises: 003_interrupted_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from reconcile.ledger_migrations import state_schema

revision = "004_run_slices"
down_revision = "003_interrupted_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create run_slices."""
    schema = state_schema()
    op.create_table(
        "run_slices",
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey(f"{schema}.runs.id"), nullable=False),
        sa.Column("slice", sa.Integer, nullable=False),
        sa.Column("decided_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "slice"),
        schema=schema,
    )


def downgrade() -> None:
    """Drop run_slices."""
    op.drop_table("run_slices", schema=state_schema())
