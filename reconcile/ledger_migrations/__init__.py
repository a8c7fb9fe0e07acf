"""Alembic's migrations of the ledger: env.py and versions/, shipped as package data."""

from __future__ import annotations

from alembic import op


def state_schema() -> str:
    """The schema a revision changes: the one `reconcile migrate` was given (--state-schema)."""
    return str(op.get_context().opts["version_table_schema"])
