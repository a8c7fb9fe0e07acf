"""A run stopped by SIGINT or SIGTERM (or unanswered at its prompt) ends 'interrupted'.

It stopped between two batches, recorded what it sent, and removed the 'sending' rows of the
events it never sent. Like 'failed', it covers nothing: the next run sends the rest.

Revision ID: 003_interrupted_runs
Revises: 002_server_identity_and_coverage
"""

from __future__ import annotations

from alembic import op

from reconcile.ledger_migrations import state_schema

revision = "003_interrupted_runs"
down_revision = "002_server_identity_and_coverage"
branch_labels = None
depends_on = None

_BEFORE = "'running', 'succeeded', 'incomplete', 'failed'"


def upgrade() -> None:
    """Allow the status 'interrupted'."""
    _statuses(f"{_BEFORE}, 'interrupted'")


def downgrade() -> None:
    """Allow only the statuses before 'interrupted'."""
    _statuses(_BEFORE)


def _statuses(allowed: str) -> None:
    schema = state_schema()
    op.drop_constraint("runs_status_check", "runs", schema=schema, type_="check")
    op.create_check_constraint("runs_status_check", "runs", f"status IN ({allowed})", schema=schema)
