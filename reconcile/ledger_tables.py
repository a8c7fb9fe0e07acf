"""The ledger's tables as SQLAlchemy Core: one MetaData, the schema given when a query runs."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

#: Without a schema: connections map None to the state schema (`schema_translate_map`), so
#: one definition serves litellm_reconcile and any --state-schema. The Alembic revisions in
#: ledger_migrations/ create these tables; this is how the queries see them.
metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the spend-log database, password masked
    sa.Column("source_id", sa.Text),  # its server identity (postgres.server_identity)
    sa.Column("event_code", sa.Text, nullable=False),
    sa.Column("charge_by", sa.Text, nullable=False),
    sa.Column("window_since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("covered_until", sa.DateTime(timezone=True)),
    sa.Column("settings", JSONB, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("counts", JSONB),
    sa.Column("error", sa.Text),
)

sent_events = sa.Table(
    "sent_events",
    metadata,
    sa.Column("transaction_id", sa.Text, primary_key=True),
    sa.Column("external_subscription_id", sa.Text, primary_key=True),
    sa.Column("event_code", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("event_timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("response_cost", sa.Numeric, nullable=False),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
)

#: The columns `record_sending` copies, in order.
COPIED = (
    "transaction_id",
    "external_subscription_id",
    "event_code",
    "request_id",
    "event_timestamp",
    "response_cost",
    "run_id",
    "status",
)

run_slices = sa.Table(
    "run_slices",
    metadata,
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("slice", sa.Integer, primary_key=True),
    sa.Column("decided_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", JSONB, nullable=False),  # frontier, counts, lines added (see job)
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
)

run_parts = sa.Table(
    "run_parts",
    metadata,
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # open, working, done
    sa.Column("worker", sa.Text),
    sa.Column("claims", sa.Integer, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("state", JSONB),  # once done: what the part added up to (see job)
)
