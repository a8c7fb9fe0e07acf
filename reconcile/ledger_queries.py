"""The ledger's statements in SQLAlchemy Core, on the tables of ledger_tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from reconcile import queries
from reconcile.ledger_tables import COPIED, runs, sent_events

#: Where `record_sending` copies a batch before merging it: a temporary table (pg_temp is
#: named so that the state schema's translation leaves it alone).
incoming = sa.table("incoming", *(sa.column(name) for name in COPIED), schema="pg_temp")


def _source(*, source_id: str, source: str, code: str, charge_by: str) -> sa.ColumnElement[bool]:
    """Runs of this source, code and charge-by. Runs from before revision 002 have no source_id.

    Their URL label stands in for it.
    """
    return sa.and_(
        runs.c.event_code == code,
        runs.c.charge_by == charge_by,
        sa.or_(
            runs.c.source_id == source_id,
            sa.and_(runs.c.source_id.is_(None), runs.c.source == source),
        ),
    )


def last_coverage(**source: str) -> sa.Select[Any]:
    """Where the nightly job's own full coverage ends.

    Succeeded runs of mode `run` over every customer, not dry runs (only those record
    covered_until).
    """
    settings = runs.c.settings
    return sa.select(
        sa.func.max(sa.func.coalesce(runs.c.covered_until, runs.c.window_until))
    ).where(
        runs.c.mode == "run",
        runs.c.status == "succeeded",
        _source(**source),
        sa.or_(runs.c.covered_until.is_not(None), runs.c.source_id.is_(None)),
        sa.not_(sa.func.coalesce(settings["dry_run"].astext.cast(sa.Boolean), sa.false())),
        sa.func.coalesce(sa.func.jsonb_array_length(settings["customers"]), 0) == 0,
    )


def first_attempt(**source: str) -> sa.Select[Any]:
    """Where the nightly job's earliest run began, whatever became of it.

    Before the job has covered anything it starts there, so a first run that failed is never
    skipped over.
    """
    return sa.select(sa.func.min(runs.c.window_since)).where(
        runs.c.mode == "run", _source(**source)
    )


def start_run(
    *, mode: str, source: str, source_id: str, code: str, charge_by: str,
    since: dt.datetime, until: dt.datetime, settings: Mapping[str, Any],
) -> sa.Insert:  # fmt: skip
    """A run, recorded as running; returns its id."""
    return (
        sa.insert(runs)
        .values(
            mode=mode,
            source=source,
            source_id=source_id,
            event_code=code,
            charge_by=charge_by,
            window_since=since,
            window_until=until,
            settings=settings,
        )
        .returning(runs.c.id)
    )


def finish_run(
    run_id: int, status: str, counts: Mapping[str, Any], error: str | None,
    covered_until: dt.datetime | None,
) -> sa.Update:  # fmt: skip
    """How a run ended."""
    return (
        sa.update(runs)
        .where(runs.c.id == run_id)
        .values(
            finished_at=sa.func.now(),
            status=status,
            counts=counts,
            error=error,
            covered_until=covered_until,
        )
    )


def create_incoming(schema: str) -> sa.TextClause:
    """The temporary table a batch is copied into, dropped when its transaction ends."""
    quoted = queries.schema_identifier(schema)
    return sa.text(
        f"CREATE TEMPORARY TABLE incoming (LIKE {quoted}.sent_events INCLUDING DEFAULTS) "
        "ON COMMIT DROP"
    )


#: psycopg's COPY of a batch into `incoming` (the hot path stays COPY).
COPY_INCOMING = f"COPY incoming ({', '.join(COPIED)}) FROM STDIN"


def merge_incoming() -> sa.Insert:
    """An event already recorded keeps its row, unless it is still 'sending' (an interrupted run).

    Then this run takes it over.
    """
    insert = postgresql.insert(sent_events).from_select(
        list(COPIED), sa.select(*(incoming.c[name] for name in COPIED))
    )
    return insert.on_conflict_do_update(
        index_elements=[sent_events.c.transaction_id, sent_events.c.external_subscription_id],
        set_={"run_id": insert.excluded.run_id, "recorded_at": sa.func.now()},
        where=sent_events.c.status == "sending",
    )


def _among(pairs: Sequence[tuple[str, str]]) -> sa.ColumnElement[bool]:
    """The sent_events rows of these (transaction id, subscription) pairs, bound as 2 arrays."""
    transaction_ids, subscriptions = (list(column) for column in zip(*pairs, strict=True))
    arrays = (
        sa.func.unnest(
            sa.literal(transaction_ids, postgresql.ARRAY(sa.Text)),
            sa.literal(subscriptions, postgresql.ARRAY(sa.Text)),
        )
        .table_valued("transaction_id", "subscription")
        .render_derived(name="pairs")
    )
    return sa.tuple_(sent_events.c.transaction_id, sent_events.c.external_subscription_id).in_(
        sa.select(arrays.c.transaction_id, arrays.c.subscription)
    )


def set_status(status: str, run_id: int, pairs: Sequence[tuple[str, str]]) -> sa.Update:
    """Events delivered by this run, or found already in Lago."""
    return (
        sa.update(sent_events)
        .where(_among(pairs))
        .values(status=status, sent_at=sa.func.now(), run_id=run_id)
    )


def forget_unsent(run_id: int, pairs: Sequence[tuple[str, str]]) -> sa.Delete:
    """Events a run wrote 'sending' and then never sent (interrupted before their batch).

    No trace to keep, the next run sends them.
    """
    return sa.delete(sent_events).where(
        sent_events.c.run_id == run_id, sent_events.c.status == "sending", _among(pairs)
    )


def sending(code: str) -> sa.Select[Any]:
    """Events an interrupted run may or may not have sent: few, usually none."""
    return sa.select(sent_events.c.transaction_id, sent_events.c.external_subscription_id).where(
        sent_events.c.status == "sending", sent_events.c.event_code == code
    )


def confirm_in_lago(pairs: Sequence[tuple[str, str]]) -> sa.Update:
    """'sending' events Lago turned out to hold: 'sent'."""
    return (
        sa.update(sent_events)
        .where(sent_events.c.status == "sending", _among(pairs))
        .values(status="sent", sent_at=sa.func.coalesce(sent_events.c.sent_at, sa.func.now()))
    )


def backfilled(
    *, code: str, charge_by: str, since: dt.datetime, until: dt.datetime
) -> sa.Select[Any]:
    """(transaction id, run id) of the events reconcile sent or found already in Lago.

    For this code and charge-by, by the time their rows ended, in [since, until).
    """
    return (
        sa.select(sent_events.c.transaction_id, sent_events.c.run_id)
        .join(runs, runs.c.id == sent_events.c.run_id)
        .where(
            sent_events.c.event_code == code,
            runs.c.charge_by == charge_by,
            sent_events.c.status.in_(("sent", "already_in_lago")),
            sent_events.c.event_timestamp >= since,
            sent_events.c.event_timestamp < until,
        )
    )


def latest_run(
    *, mode: str, source_id: str, code: str, charge_by: str, since: dt.datetime, until: dt.datetime
) -> sa.Select[Any]:
    """The latest run of one command over one window that may send: id, status and settings.

    Dry runs commit nothing and are passed over.
    """
    return (
        sa.select(runs.c.id, runs.c.status, runs.c.settings)
        .where(
            runs.c.settings["dry_run"].as_boolean().is_not(True),
            runs.c.mode == mode,
            runs.c.source_id == source_id,
            runs.c.event_code == code,
            runs.c.charge_by == charge_by,
            runs.c.window_since == since,
            runs.c.window_until == until,
        )
        .order_by(runs.c.id.desc())
        .limit(1)
    )


def reopen_run(run_id: int, settings: Mapping[str, Any]) -> sa.Update:
    """A run cut short, running again (resumed)."""
    return (
        sa.update(runs)
        .where(runs.c.id == run_id)
        .values(status="running", finished_at=None, error=None, settings=settings)
    )
