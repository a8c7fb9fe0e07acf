"""Runs and sent events: every run, and every event it sent to Lago (the audit trail).

Revision ID: 001_runs_and_sent_events
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from reconcile.ledger_migrations import state_schema

revision = "001_runs_and_sent_events"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create `runs` and `sent_events` with their indexes."""
    schema = state_schema()
    # One row per `reconcile run` or `reconcile backfill`, written when it starts, completed
    # when it ends. The last succeeded run of a (source, event_code, charge_by) is where the
    # next nightly window starts.
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, primary_key=True),  # bigserial
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),  # the spend-log database, masked
        sa.Column("event_code", sa.Text, nullable=False),
        sa.Column("charge_by", sa.Text, nullable=False),
        sa.Column("window_since", _TIME, nullable=False),  # [since, until) on "startTime"
        sa.Column("window_until", _TIME, nullable=False),
        sa.Column("settings", JSONB, nullable=False),  # skew, max delay, dry run, limits...
        sa.Column("started_at", _TIME, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", _TIME),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("counts", JSONB),  # rows and spend per class, matches, missing, sent
        sa.Column("error", sa.Text),
        sa.CheckConstraint("mode IN ('run', 'backfill')", name="runs_mode_check"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'incomplete', 'failed')",
            name="runs_status_check",
        ),
        schema=schema,
    )
    op.create_index(
        "runs_last_success",
        "runs",
        ["source", "event_code", "charge_by", sa.text("window_until DESC")],
        schema=schema,
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    # One row per event reconcile sent (or was about to send: 'sending' is written first, so
    # an interrupted run leaves a trace the next run confirms against what Lago holds).
    op.create_table(
        "sent_events",
        sa.Column("transaction_id", sa.Text, nullable=False),
        sa.Column("external_subscription_id", sa.Text, nullable=False),
        sa.Column("event_code", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),  # "LiteLLM_SpendLogs".request_id
        sa.Column("event_timestamp", _TIME, nullable=False),  # the event's time: "endTime"
        sa.Column("response_cost", sa.Numeric, nullable=False),  # USD, every digit stored
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", _TIME),
        sa.PrimaryKeyConstraint("transaction_id", "external_subscription_id"),
        sa.ForeignKeyConstraint(["run_id"], [f"{schema}.runs.id"]),
        sa.CheckConstraint(
            "status IN ('sending', 'sent', 'already_in_lago')", name="sent_events_status_check"
        ),
        schema=schema,
    )
    op.create_index("sent_events_run", "sent_events", ["run_id"], schema=schema)
    op.create_index("sent_events_time", "sent_events", ["event_timestamp"], schema=schema)


def downgrade() -> None:
    """Drop both tables (and the audit trail with them)."""
    op.drop_table("sent_events", schema=state_schema())
    op.drop_table("runs", schema=state_schema())
