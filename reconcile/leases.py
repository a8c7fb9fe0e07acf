"""A run's window in parts, each leased to one worker at a time: enter, claim, renew, finish.

Any number of processes (`--workers N`, a Kubernetes Indexed Job's pods) share one run: the
first to enter a source records the run and its parts; the others, with the same command and
settings, join it. Each claims parts with FOR UPDATE SKIP LOCKED and holds its claim with a
heartbeat; a part whose worker died is claimed again once its lease expires, and goes on from
its last committed slice. Entering takes a transaction-level advisory lock, the only lock: a
session is never held, so the ledger may sit behind PgBouncer's transaction pooling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconcile import ledger_leases as statements
from reconcile import resume
from reconcile.engine import engine
from reconcile.errors import ReconcileError, RunLocked
from reconcile.ledger import Ledger, lock_key
from reconcile.settings import JobSettings
from reconcile.window import UTC, Window, format_instant

log = logging.getLogger(__name__)


def worker_name() -> str:
    """The name this process works under: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def plan_parts(window: Window, part: dt.timedelta | None) -> list[Window]:
    """The window cut at the multiples of `part` since the Unix epoch (None: one part)."""
    if part is None:
        return [window]
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    cut = epoch + ((window.since - epoch) // part + 1) * part
    parts, since = [], window.since
    while cut < window.until:
        parts.append(Window(since, cut))
        since, cut = cut, cut + part
    return [*parts, Window(since, window.until)]


class LeaseLost(ReconcileError):
    """The lease on a part expired and another worker claimed it: this one leaves the part."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """A part of a run this worker holds the lease of."""

    run_id: int
    part: int
    window: Window


@dataclasses.dataclass(frozen=True)
class Entered:
    """The run a worker takes part in, and how it came to."""

    run_id: int
    window: Window
    """The run's window (a nightly run joined: the one it started with)."""
    how: str
    """"started", "resumed", "joined", or "ended" (the run to join had no live worker left)."""
    parts: int
    claim: Claim | None
    """The first part this worker claimed as it entered (None: none was free)."""


def enter(
    ledger: Ledger,
    settings: JobSettings,
    *,
    source: str,
    source_id: str,
    recorded: dict[str, Any],
    now: dt.datetime,
    worker: str,
    lease: dt.timedelta,
) -> Entered:
    """Join the live run of the same command and settings, resume the one cut short, or start.

    In the same transaction `worker` claims a first part, so a run is never seen without a
    live lease while its worker lives. Raises RunLocked when another run of the source
    (another command, window or settings) has a live worker. Runs left `running` with no
    live lease (their workers were killed) are recorded as failed first. With
    `settings.join`, only that run is joined (whatever --restart says): "ended" when it has
    no live worker left.
    """
    code, charge_by = settings.code, settings.charge_by.value
    with ledger.transaction():
        ledger.execute(statements.lock_for_entry(lock_key(source_id, code, charge_by)))
        running_runs = statements.running_runs(source_id=source_id, code=code, charge_by=charge_by)
        running = ledger.execute(running_runs).all()
        alive = [run._mapping["id"] for run in running if run._mapping["alive"]]
        if sum(take_over_local_dead(ledger, run_id) for run_id in alive):
            running = ledger.execute(running_runs).all()
        if settings.join is not None:  # the run was started (or restarted) by who started this
            running = [run for run in running if run._mapping["id"] == settings.join]
            settings = dataclasses.replace(settings, restart=False)
        for run in running:
            fields = run._mapping  # SQLAlchemy's public mapping view of a row
            if not fields["alive"]:
                continue
            window = Window(fields["window_since"], fields["window_until"])
            differing = _differing(settings, recorded, fields["mode"], window, fields["settings"])
            if not differing:
                count = len(ledger.execute(statements.parts(fields["id"])).all())
                log.info("joining run %s, under way (%s parts)", fields["id"], count)
                first = claim(ledger, fields["id"], worker, lease)
                return Entered(fields["id"], window, "joined", count, first)
            raise RunLocked(
                f"another reconcile run of {source} (code {code}, charge-by {charge_by}) is "
                f"under way: run {fields['id']} ({fields['mode']} of {format_instant(window.since)}"
                f" to {format_instant(window.until)}), with a live worker; try again when it "
                f"ends (the same command and settings would join it; this one differs in: "
                f"{', '.join(differing)})"
            )
        if settings.join is not None:  # it ended before this worker came: nothing to do
            return Entered(settings.join, settings.window, "ended", 0, None)
        error = "its process ended without finishing (killed): no worker renewed its lease"
        dead = ledger.execute(
            statements.close_dead_runs(
                source_id=source_id, code=code, charge_by=charge_by, error=error
            )
        ).rowcount
        if dead:
            log.info("%s run(s) left running by a killed process recorded as failed", dead)
        found = None
        if not settings.dry_run and not settings.restart:
            found = resume.find_run(ledger, settings, source_id=source_id, recorded=recorded)
        if found is not None:
            run_id, status, before = found
            ledger.reopen_run(run_id, resume.noted(before, now))
            count = len(ledger.execute(statements.parts(run_id)).all())
            log.info("resuming run %s (%s)", run_id, status)
            first = claim(ledger, run_id, worker, lease)
            return Entered(run_id, settings.window, "resumed", count, first)
        run_id = ledger.start_run(
            mode=settings.mode, source=source, source_id=source_id, code=code,
            charge_by=charge_by, since=settings.window.since, until=settings.window.until,
            settings=recorded,
        )  # fmt: skip
        parts = plan_parts(settings.window, settings.part)
        ledger.execute(statements.add_parts(run_id, [(p.since, p.until) for p in parts]))
        first = claim(ledger, run_id, worker, lease)
        return Entered(run_id, settings.window, "started", len(parts), first)


def _differing(
    settings: JobSettings,
    recorded: dict[str, Any],
    mode: str,
    window: Window,
    before: dict[str, Any],
) -> list[str]:
    """What keeps this process from joining a run under way (none: it joins).

    The command, the window (but a nightly `run`'s: it takes the one under way), a recorded
    setting, or --restart.
    """
    found = ["the command"] if mode != settings.mode else []
    if mode != "run" and window != settings.window:
        found.append("the window")
    found += resume.differences(dict(before), recorded)
    return found + (["--restart"] if settings.restart else [])


def claim(ledger: Ledger, run_id: int, worker: str, lease: dt.timedelta) -> Claim | None:
    """The next part of the run nobody works on, now this worker's; None: none is free.

    A run another worker recorded as ended (interrupted, failed) runs again.
    """
    with ledger.transaction():
        found = ledger.execute(statements.claim_part(run_id, worker, lease)).first()
        if found is not None:
            ledger.execute(statements.running_again(run_id))
    if found is None:
        return None
    fields = found._mapping  # SQLAlchemy's public mapping view of a row
    return Claim(run_id, int(fields["part"]), Window(fields["since"], fields["until"]))


def slice_states(ledger: Ledger, claim: Claim) -> list[tuple[int, dict[str, Any]]]:
    """The state each committed slice of the claimed part recorded, by slice number."""
    rows = ledger.execute(statements.slice_states(claim.run_id, claim.part)).all()
    return [(int(row._mapping["slice"]), dict(row._mapping["state"])) for row in rows]


def record_slice(
    ledger: Ledger,
    claim: Claim,
    worker: str,
    number: int,
    decided_until: dt.datetime,
    state: dict[str, Any],
) -> None:
    """Commit one slice of the part; LeaseLost if the part is no longer this worker's."""
    statement = statements.record_slice(
        claim.run_id, claim.part, worker, number, decided_until, state
    )
    if ledger.execute(statement).first() is None:
        raise _lost(claim)


def finish_part(ledger: Ledger, claim: Claim, worker: str, state: dict[str, Any]) -> bool:
    """Record the part done with what it added up to; False if it is no longer this worker's."""
    statement = statements.finish_part(claim.run_id, claim.part, worker, state)
    return bool(ledger.execute(statement).rowcount)


def release(ledger: Ledger, claim: Claim, worker: str) -> None:
    """Give the part up (interrupted, failed): open for the next worker to claim."""
    ledger.execute(statements.release(claim.run_id, claim.part, worker))


def finished_already(ledger: Ledger, run_id: int) -> bool:
    """Whether another worker has recorded the run as finished."""
    return ledger.execute(statements.run_status(run_id)).scalar() in ("succeeded", "incomplete")


def _lost(claim: Claim) -> LeaseLost:
    return LeaseLost(
        f"the lease on part {claim.part + 1} of run {claim.run_id} expired and another worker "
        "claimed it: this one leaves the part to it (its committed slices are kept)"
    )


@dataclasses.dataclass(frozen=True)
class PartsState:
    """How a run's parts stand."""

    done: list[dict[str, Any]]
    """The states of the parts done."""
    total: int
    working: int
    """Parts a live worker holds."""

    @property
    def finished(self) -> bool:
        return len(self.done) == self.total


def parts_state(ledger: Ledger, run_id: int) -> PartsState:
    """The run's parts: the states of those done, how many there are and are worked on."""
    rows = ledger.execute(statements.parts(run_id)).all()
    done = [dict(row._mapping["state"]) for row in rows if row._mapping["status"] == "done"]
    working = sum(1 for row in rows if row._mapping["alive"])
    return PartsState(done, len(rows), working)


def take_over_local_dead(ledger: Ledger, run_id: int) -> int:
    """Expire the leases of this run held by processes of this host that are gone.

    A worker killed on this machine need not wait for its lease to expire: its pid is no
    more. How many were expired.
    """
    rows = ledger.execute(statements.holders(run_id)).all()
    host, gone = socket.gethostname(), []
    for (worker,) in rows:
        name, _, rest = str(worker).partition(":")
        pid = rest.partition(":")[0]
        if name == host and pid.isdigit() and not alive(int(pid)):
            gone.append(str(worker))
    return ledger.execute(statements.expire(run_id, gone)).rowcount if gone else 0


def alive(pid: int) -> bool:
    """Whether a process of this host still runs: a zombie (ended, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    try:  # Linux: the state after the command's name in parentheses
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class Heartbeat:
    """Renews a worker's lease on its part in a thread, over a connection of its own.

    `lost` is set once the lease is another's (it expired and was claimed again): the worker
    then stops that part, its committed slices kept for the next.
    """

    def __init__(self, ledger: Ledger, claim: Claim, worker: str, lease: dt.timedelta) -> None:
        self.ledger, self.claim, self.worker, self.lease = ledger, claim, worker, lease
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def check(self) -> None:
        """LeaseLost once the part is another worker's."""
        if self.lost.is_set():
            raise _lost(self.claim)

    def _beat(self) -> None:
        every = self.lease.total_seconds() / 3
        part = self.claim.part
        renew = statements.renew(self.claim.run_id, part, self.worker, self.lease)
        with _connection(self.ledger) as connection:
            while not self._done.wait(every):
                try:
                    renewed = connection.execute(renew).rowcount
                    connection.commit()
                except Exception as error:  # the next beat tries again; the lease may hold
                    connection.rollback()
                    log.warning("could not renew the lease on part %s: %s", part, error)
                    continue
                if not renewed:  # the worker says so when it next looks (check, a commit)
                    self.lost.set()
                    return


@contextlib.contextmanager
def _connection(ledger: Ledger) -> Iterator[sa.Connection]:
    """A connection of its own to the ledger's schema (one thread's, besides the run's)."""
    with engine(ledger.database).connect() as connection:
        yield connection.execution_options(schema_translate_map={None: ledger.schema})
