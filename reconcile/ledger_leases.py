"""The ledger's statements for a run's parts and their leases (SQLAlchemy Core)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from reconcile.ledger_tables import run_parts, run_slices, runs


def lock_for_entry(key: int) -> sa.Select[Any]:
    """Processes enter a source's runs one at a time, for one transaction (not a session).

    A transaction-level advisory lock: it holds within one server transaction, so also
    behind PgBouncer's transaction pooling, and ends with it.
    """
    return sa.select(sa.func.pg_advisory_xact_lock(key))


def _live() -> sa.Exists:
    """A run with a part whose lease has not expired: a worker is on it."""
    return sa.exists().where(
        run_parts.c.run_id == runs.c.id,
        run_parts.c.status == "working",
        run_parts.c.expires_at > sa.func.clock_timestamp(),
    )


def running_runs(*, source_id: str, code: str, charge_by: str) -> sa.Select[Any]:
    """Runs of a source recorded `running`: id, mode, window, settings, whether one is alive."""
    return (
        sa.select(
            runs.c.id,
            runs.c.mode,
            runs.c.window_since,
            runs.c.window_until,
            runs.c.settings,
            _live().label("alive"),
        )
        .where(
            runs.c.status == "running",
            runs.c.source_id == source_id,
            runs.c.event_code == code,
            runs.c.charge_by == charge_by,
        )
        .order_by(runs.c.id)
    )


def add_parts(run_id: int, parts: Sequence[tuple[dt.datetime, dt.datetime]]) -> sa.Insert:
    """A new run's parts, open."""
    return sa.insert(run_parts).values(
        [
            {
                "run_id": run_id,
                "part": number,
                "since": since,
                "until": until,
                "status": "open",
                "claims": 0,
            }
            for number, (since, until) in enumerate(parts)
        ]
    )


def claim_part(run_id: int, worker: str, lease: dt.timedelta) -> sa.Update:
    """The first part nobody works on (open, or its lease expired), leased to `worker`.

    FOR UPDATE SKIP LOCKED: workers claiming at once each get another part. Returns the
    part's number, since and until (no row: nothing left to claim).
    """
    now = sa.func.clock_timestamp()
    free = (
        sa.select(run_parts.c.run_id, run_parts.c.part)
        .where(
            run_parts.c.run_id == run_id,
            sa.or_(
                run_parts.c.status == "open",
                sa.and_(run_parts.c.status == "working", run_parts.c.expires_at <= now),
            ),
        )
        .order_by(run_parts.c.part)
        .limit(1)
        .with_for_update(skip_locked=True)
        .subquery()
    )
    return (
        sa.update(run_parts)
        .where(run_parts.c.run_id == free.c.run_id, run_parts.c.part == free.c.part)
        .values(
            status="working",
            worker=worker,
            claims=run_parts.c.claims + 1,
            heartbeat_at=now,
            expires_at=now + lease,
        )
        .returning(run_parts.c.part, run_parts.c.since, run_parts.c.until)
    )


def _held(run_id: int, part: int, worker: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        run_parts.c.run_id == run_id,
        run_parts.c.part == part,
        run_parts.c.worker == worker,
        run_parts.c.status == "working",
    )


def renew(run_id: int, part: int, worker: str, lease: dt.timedelta) -> sa.Update:
    """The worker's lease on its part, extended (no row: the part is no longer its)."""
    now = sa.func.clock_timestamp()
    return (
        sa.update(run_parts)
        .where(_held(run_id, part, worker))
        .values(heartbeat_at=now, expires_at=now + lease)
    )


def release(run_id: int, part: int, worker: str) -> sa.Update:
    """A part the worker gives up (interrupted, failed): open for the next to claim."""
    return (
        sa.update(run_parts)
        .where(_held(run_id, part, worker))
        .values(status="open", worker=None, expires_at=None)
    )


def finish_part(run_id: int, part: int, worker: str, state: Mapping[str, Any]) -> sa.Update:
    """A part done, with what it added up to."""
    return (
        sa.update(run_parts)
        .where(_held(run_id, part, worker))
        .values(status="done", state=state, expires_at=None, heartbeat_at=sa.func.now())
    )


def parts(run_id: int) -> sa.Select[Any]:
    """A run's parts: number, status, whether leased alive, state."""
    alive = sa.and_(
        run_parts.c.status == "working", run_parts.c.expires_at > sa.func.clock_timestamp()
    )
    return (
        sa.select(run_parts.c.part, run_parts.c.status, alive.label("alive"), run_parts.c.state)
        .where(run_parts.c.run_id == run_id)
        .order_by(run_parts.c.part)
    )


def record_slice(
    run_id: int, part: int, worker: str, number: int, decided_until: dt.datetime,
    state: Mapping[str, Any],
) -> sa.Insert:  # fmt: skip
    """One committed slice of a part, only while `worker` holds the part's lease.

    No row returned: it does not.
    """
    held = sa.select(
        sa.literal(run_id), sa.literal(part), sa.literal(number),
        sa.literal(decided_until, sa.DateTime(timezone=True)),
        sa.literal(state, run_slices.c.state.type), sa.func.now(),
    ).where(sa.exists().where(_held(run_id, part, worker)))  # fmt: skip
    return (
        sa.insert(run_slices)
        .from_select(["run_id", "part", "slice", "decided_until", "state", "committed_at"], held)
        .returning(run_slices.c.slice)
    )


def slice_states(run_id: int, part: int) -> sa.Select[Any]:
    """The state each committed slice of a part recorded, in order."""
    return (
        sa.select(run_slices.c.slice, run_slices.c.state)
        .where(run_slices.c.run_id == run_id, run_slices.c.part == part)
        .order_by(run_slices.c.slice)
    )


def committed_anything(run_id: int) -> sa.Select[Any]:
    """Whether a run committed a slice or finished a part."""
    return sa.select(
        sa.or_(
            sa.exists().where(run_slices.c.run_id == run_id),
            sa.exists().where(run_parts.c.run_id == run_id, run_parts.c.status == "done"),
        )
    )


def running_again(run_id: int) -> sa.Update:
    """A run recorded as ended (interrupted, failed) that a worker goes on with."""
    return (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status.in_(("interrupted", "failed")))
        .values(status="running", finished_at=None, error=None)
    )


def lock_run(run_id: int) -> sa.Select[Any]:
    """A run's row, locked until the transaction ends: its workers' endings take turns."""
    return sa.select(runs.c.id).where(runs.c.id == run_id).with_for_update()


def run_status(run_id: int) -> sa.Select[Any]:
    """A run's status."""
    return sa.select(runs.c.status).where(runs.c.id == run_id)


def holders(run_id: int) -> sa.Select[Any]:
    """The workers holding a live lease on a part of the run."""
    return sa.select(run_parts.c.worker).where(
        run_parts.c.run_id == run_id,
        run_parts.c.status == "working",
        run_parts.c.expires_at > sa.func.clock_timestamp(),
    )


def expire(run_id: int, workers: Sequence[str]) -> sa.Update:
    """These workers' leases on the run's parts, expired now (their processes are gone)."""
    return (
        sa.update(run_parts)
        .where(
            run_parts.c.run_id == run_id,
            run_parts.c.status == "working",
            run_parts.c.worker.in_(list(workers)),
        )
        .values(expires_at=sa.func.clock_timestamp())
    )


def close_dead_runs(*, source_id: str, code: str, charge_by: str, error: str) -> sa.Update:
    """Runs of a source left `running` with no live lease (killed): `failed`, with `error`."""
    return (
        sa.update(runs)
        .where(
            runs.c.status == "running",
            runs.c.source_id == source_id,
            runs.c.event_code == code,
            runs.c.charge_by == charge_by,
            sa.not_(_live()),
        )
        .values(status="failed", finished_at=sa.func.now(), error=error)
    )
