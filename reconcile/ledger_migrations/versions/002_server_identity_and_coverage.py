"""Runs name their spend-log database by its server identity, and record their coverage.

Two spellings of one URL share a history and a lock (source_id); `source` stays, as a label.
A nightly run records how far it covered the window in full (covered_until): the next one
starts there. Events an interrupted run left 'sending' are looked for by every run.

Revision ID: 002_server_identity_and_coverage
Revises: 001_runs_and_sent_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconcile.ledger_migrations import state_schema

revision = "002_server_identity_and_coverage"
down_revision = "001_runs_and_sent_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add runs.source_id and runs.covered_until, and the indexes that find them."""
    schema = state_schema()
    op.add_column("runs", sa.Column("source_id", sa.Text), schema=schema)
    op.add_column("runs", sa.Column("covered_until", sa.DateTime(timezone=True)), schema=schema)
    op.create_index(
        "runs_coverage",
        "runs",
        ["source_id", "event_code", "charge_by", sa.text("covered_until DESC")],
        schema=schema,
        postgresql_where=sa.text(
            "mode = 'run' AND status = 'succeeded' AND covered_until IS NOT NULL"
        ),
    )
    op.create_index(
        "sent_events_sending",
        "sent_events",
        ["event_code"],
        schema=schema,
        postgresql_where=sa.text("status = 'sending'"),
    )


def downgrade() -> None:
    """Remove what upgrade added."""
    schema = state_schema()
    op.drop_index("sent_events_sending", "sent_events", schema=schema)
    op.drop_index("runs_coverage", "runs", schema=schema)
    op.drop_column("runs", "covered_until", schema=schema)
    op.drop_column("runs", "source_id", schema=schema)
