"""Workers: a window cut into parts, leased one worker at a time; killed, frozen, refused."""

import datetime as dt
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_reconcile_e2e import billable, billed_once, callback
from test_resume import COMMAND, day, environment, lago  # noqa: F401 - fixtures

from reconcile import leases
from reconcile.lago_emulator import LagoEmulator
from reconcile.ledger import Ledger
from reconcile.postgres import Database, connect
from reconcile.settings import ChargeBy, JobSettings
from reconcile.testing.factory import SpendLog
from reconcile.window import UTC, Window

H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "part", "cuts"),
    [
        (T0, T0 + 24 * H, None, [T0, T0 + 24 * H]),
        (T0, T0 + 24 * H, 6 * H, [T0 + n * 6 * H for n in range(5)]),
        (T0 + 5 * H, T0 + 13 * H, 6 * H, [T0 + 5 * H, T0 + 6 * H, T0 + 12 * H, T0 + 13 * H]),
        (T0 + 7 * H, T0 + 8 * H, 24 * H, [T0 + 7 * H, T0 + 8 * H]),
        (T0, T0 + 6 * H, 6 * H, [T0, T0 + 6 * H]),
    ],
)
def test_parts_are_cut_on_the_grid_and_cover_the_window(
    since: dt.datetime, until: dt.datetime, part: dt.timedelta | None, cuts: list[dt.datetime]
) -> None:
    parts = leases.plan_parts(Window(since, until), part)
    assert [parts[0].since, *(each.until for each in parts)] == cuts
    assert all(a.until == b.since for a, b in itertools.pairwise(parts))


def run_rows(database: Database) -> list[tuple[int, str]]:
    with connect(database) as connection:
        return connection.execute(  # type: ignore[return-value]
            "SELECT id, status FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()


def parts_rows(database: Database) -> list[tuple[int, str, str, int]]:
    with connect(database) as connection:
        return connection.execute(  # type: ignore[return-value]
            "SELECT part, status, worker, claims FROM litellm_reconcile.run_parts ORDER BY part"
        ).fetchall()


def committed(database: Database) -> int:
    with connect(database) as connection:
        found = connection.execute("SELECT count(*) FROM litellm_reconcile.run_slices").fetchone()
    return found[0] if found else 0


def worker(
    command: list[str], env: dict[str, str], *, quiet: bool = False
) -> subprocess.Popen[str]:
    """A worker process started on its own: its stderr to read (quiet: dropped), stdout dropped."""
    stderr = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def wait_for(check: Callable[[], bool], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_workers_share_one_run_and_bill_each_row_once(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    database, rows = day
    owed = billable(rows)
    callback(lago, [row for index, row in enumerate(owed) if index % 4])
    lago.faults.latency(0.15)  # parts take a while: the workers started later get some
    done = subprocess.run(
        [*COMMAND, "--workers", "3", "--part", "3h"], env=environment(database, lago),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    billed_once(lago, rows)
    parts = parts_rows(database)
    assert [status for _, status, _, _ in parts] == ["done"] * 8
    assert all(claims == 1 for *_, claims in parts)  # nobody died: each part claimed once
    assert len({worker for _, _, worker, _ in parts}) >= 2
    assert run_rows(database) == [(1, "succeeded")]
    assert "parts      " in done.stderr
    assert done.stderr.count("the run is done") == 1  # the parent's: its workers print none
    assert f"sent now {len(owed) - len(owed[1::4]) - len(owed[2::4]) - len(owed[3::4])}" in (
        " ".join(done.stderr.split())
    )


def test_a_killed_worker_leaves_its_part_to_the_others(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """Two workers of one run; one is killed mid-part: the other goes on with that part from
    its last committed slice, and every row is billed once."""
    database, rows = day
    callback(lago, billable(rows)[::2])
    lago.faults.latency(0.1)
    command = [*COMMAND, "--part", "2h", "--lease", "3s"]
    env = environment(database, lago)
    first = worker(command, env, quiet=True)
    wait_for(lambda: committed(database) >= 2)
    second = worker(command, env)

    def both_at_work() -> bool:
        parts = parts_rows(database)
        return any(f":{first.pid}:" in (worker or "") and status == "working"
                   for _, status, worker, _ in parts) and any(
            f":{second.pid}:" in (worker or "") for _, _, worker, _ in parts
        )  # fmt: skip

    wait_for(both_at_work)
    first.send_signal(signal.SIGKILL)
    first.wait()
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    billed_once(lago, rows)
    parts = parts_rows(database)
    assert [status for _, status, _, _ in parts] == ["done"] * 12
    assert any(claims == 2 for *_, claims in parts)  # the killed worker's, claimed again
    assert run_rows(database) == [(1, "succeeded")]


def test_a_frozen_worker_loses_its_part_when_its_lease_expires(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """A worker stopped (SIGSTOP: alive, silent) past its lease: another claims the part and
    finishes the run; woken up, the first finds the part another's and commits nothing."""
    database, rows = day
    lago.faults.latency(0.02)
    command = [*COMMAND, "--part", "12h", "--lease", "3s"]
    env = environment(database, lago)
    frozen = worker(command, env)
    wait_for(lambda: committed(database) >= 1)
    frozen.send_signal(signal.SIGSTOP)
    try:
        other = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                               check=False)  # fmt: skip
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert other.returncode == 0, other.stderr
    assert "another worker claimed it" in err
    billed_once(lago, rows)
    assert [(status, claims) for _, status, _, claims in parts_rows(database)] == [
        ("done", 2), ("done", 1),
    ]  # fmt: skip
    assert run_rows(database) == [(1, "succeeded")]


def test_another_run_under_way_is_refused_and_the_same_one_joined(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """The leases are the one-run-at-a-time lock: another window waits its turn (exit 4, the
    difference named); the same command joins the run, waits for its part and ends with it."""
    database, rows = day
    env = environment(database, lago)
    command = [*COMMAND, "--lease", "60s"]
    running = worker(command, env, quiet=True)
    joining = None
    try:
        wait_for(lambda: committed(database) >= 1)
        running.send_signal(signal.SIGSTOP)  # alive, its lease too: the run is under way
        other_window = [*command[:5], "2026-11-01T06:00", *command[6:]]
        refused = subprocess.run(other_window, env=env, capture_output=True, text=True,
                                 timeout=120, check=False)  # fmt: skip
        assert refused.returncode == 4, refused.stderr
        assert "run 1" in refused.stderr and "under way" in refused.stderr
        assert "differs in: the window" in refused.stderr
        other_part = subprocess.run([*command, "--part", "6h"], env=env, capture_output=True,
                                    text=True, timeout=120, check=False)  # fmt: skip
        assert other_part.returncode == 4, other_part.stderr
        assert "differs in: --part" in other_part.stderr
        joining = worker(command, env)
        assert joining.stderr is not None
        said = [joining.stderr.readline() for _ in range(1)]
        while "joining run 1" not in said[-1]:
            said.append(joining.stderr.readline())
            assert said[-1], "".join(said)
        running.send_signal(signal.SIGCONT)
        _, rest = joining.communicate(timeout=300)
        assert joining.returncode == 0, "".join(said) + rest
    except BaseException:
        for process in (running, joining):
            if process is not None:
                process.kill()
        raise
    assert running.wait(timeout=120) == 0
    billed_once(lago, rows)
    assert run_rows(database) == [(1, "succeeded")]  # the refused one recorded nothing


def test_workers_claiming_at_once_get_distinct_parts(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
) -> None:
    database, _ = day
    settings = JobSettings(
        mode="backfill", window=Window(T0, T0 + 24 * H), charge_by=ChargeBy.END_USER_ID,
        code="c", part=H,
    )  # fmt: skip
    with Ledger(database) as ledger:
        entered = leases.enter(
            ledger, settings, source="s", source_id="id", recorded={}, now=T0 + 48 * H,
            worker="w0", lease=60 * H,
        )  # fmt: skip
    assert (entered.how, entered.parts) == ("started", 24)
    assert entered.claim is not None and entered.claim.part == 0
    claimed: list[int] = [0]

    def worker(name: str) -> None:
        with Ledger(database) as ledger:
            while (found := leases.claim(ledger, entered.run_id, name, 60 * H)) is not None:
                claimed.append(found.part)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(24))
    holder = next(worker for part, _, worker, _ in parts_rows(database) if part == 0)
    with Ledger(database) as ledger:
        stale = leases.Claim(entered.run_id, 0, Window(T0, T0 + H))
        with connect(database, autocommit=True) as connection:  # part 0 expires, w9 takes it
            connection.execute(
                "UPDATE litellm_reconcile.run_parts SET expires_at = now() WHERE part = 0"
            )
        assert leases.claim(ledger, entered.run_id, "w9", H) == stale
        with pytest.raises(leases.LeaseLost, match="another worker claimed it"):
            leases.record_slice(ledger, stale, holder, 0, T0, {})
        leases.record_slice(ledger, stale, "w9", 0, T0, {})
    assert committed(database) == 1


def test_a_worker_stopped_by_sigterm_frees_its_part_for_the_others(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """SIGTERM to one of two workers: it stops between two batches, frees its part and says
    the run goes on; the other takes the part and ends the run, each row billed once."""
    database, rows = day
    lago.faults.latency(0.1)
    command = [*COMMAND, "--part", "2h", "--lease", "60s"]
    env = environment(database, lago)
    first = worker(command, env)
    wait_for(lambda: committed(database) >= 1)
    second = worker(command, env)
    wait_for(lambda: any(f":{second.pid}:" in (holder or "")
                         for _, _, holder, _ in parts_rows(database)))  # fmt: skip
    first.send_signal(signal.SIGTERM)
    _, said = first.communicate(timeout=120)
    assert first.returncode == 5, said
    assert "run 1 goes on with its other workers" in said
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    billed_once(lago, rows)
    assert [status for _, status, _, _ in parts_rows(database)] == ["done"] * 12
    assert run_rows(database) == [(1, "succeeded")]


def test_workers_of_a_restarted_run_join_it_and_one_too_late_does_nothing(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """--workers' own processes join the run their parent is in (--restart is the parent's to
    act on); one arriving after that run ended leaves it alone: no run of its own, exit 0."""
    database, rows = day
    env = environment(database, lago)
    assert subprocess.run(COMMAND, env=env, capture_output=True, check=False).returncode == 0
    lago.faults.latency(0.05)
    again = subprocess.run(
        [*COMMAND, "--restart", "--workers", "2", "--part", "6h"], env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "a worker process" not in again.stderr
    assert run_rows(database) == [(1, "succeeded"), (2, "succeeded")]
    late = subprocess.run([*COMMAND, "--join-run", "2"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert late.returncode == 0, late.stderr
    assert "run 2 ended before this worker joined it" in late.stderr
    assert run_rows(database) == [(1, "succeeded"), (2, "succeeded")]
    billed_once(lago, rows)


def run_errors(database: Database) -> list[tuple[str, str | None]]:
    with connect(database) as connection:
        return [
            (status, error)
            for status, error in connection.execute(
                "SELECT status, error FROM litellm_reconcile.runs ORDER BY id"
            ).fetchall()
        ]


@pytest.mark.parametrize("cut", ["sigint", "lago-down"])
def test_workers_stopped_by_their_parent_leave_it_the_runs_end(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
    cut: str,
) -> None:
    """The process that started --workers, cut short (Ctrl-C, or Lago down past the retry
    budget), stops its workers first: it is the last to leave, so the run is recorded with its
    reason (not the SIGTERM its workers got), and it says so."""
    database, _ = day
    lago.faults.latency(0.1)
    env = {**environment(database, lago), "RECONCILE_LAGO_RETRY_BUDGET": "2"}
    parent = worker([*COMMAND, "--workers", "2", "--part", "3h"], env)
    wait_for(lambda: committed(database) >= 2 and len(
        {holder for _, status, holder, _ in parts_rows(database) if status == "working"}
    ) == 2)  # fmt: skip
    if cut == "sigint":
        parent.send_signal(signal.SIGINT)
    else:
        lago.faults.server_error(10_000)
    _, said = parent.communicate(timeout=240)
    assert parent.returncode == (5 if cut == "sigint" else 1), said
    assert "goes on with its other workers" not in said  # its copy's words too (same stderr)
    [(status, error)] = run_errors(database)
    if cut == "sigint":
        assert (status, "SIGTERM" in (error or "")) == ("interrupted", False), error
        assert "run 1 is recorded as interrupted" in said
    else:
        assert status == "failed" and "503" in (error or ""), error
    assert all(status != "working" for _, status, _, _ in parts_rows(database))


def test_a_waiting_parent_stopped_stops_its_workers_and_leaves_the_run_to_the_others(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """A process holding no part (another worker has the only one) waits; Ctrl-C then stops
    the workers it started too and says what it leaves: exit 5, the run goes on and ends with
    the worker that holds its part, each row billed once."""
    database, rows = day
    lago.faults.latency(0.05)
    command = [*COMMAND, "--part", "24h", "--lease", "60s"]
    env = environment(database, lago)
    holder = worker(command, env, quiet=True)
    try:
        wait_for(lambda: committed(database) >= 1)
        holder.send_signal(signal.SIGSTOP)  # alive, its lease too: its part stays its own
        parent = worker([*command, "--workers", "2"], env)
        assert parent.stderr is not None
        said = [parent.stderr.readline()]
        while said[-1].count("waiting until") < 1:
            said.append(parent.stderr.readline())
            assert said[-1], "".join(said)
        time.sleep(1)  # its worker started, waiting too
        parent.send_signal(signal.SIGINT)
        _, rest = parent.communicate(timeout=120)
        said.append(rest)
        assert parent.returncode == 5, "".join(said)
        assert "interrupted by SIGINT while waiting for the other workers of run 1" in rest
        assert "were stopped too" in rest
        assert run_rows(database) == [(1, "running")]
    except BaseException:
        holder.kill()
        raise
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.wait(timeout=300) == 0
    billed_once(lago, rows)
    assert run_rows(database) == [(1, "succeeded")]


def test_a_worker_ended_but_not_yet_reaped_is_gone() -> None:
    """A --workers copy killed while its parent waits is a zombie until reaped: its part must
    be free at once all the same, not after its lease."""
    child = subprocess.Popen(["sleep", "60"])
    assert leases.alive(child.pid)
    child.kill()
    wait_for(lambda: "Z" in _state(child.pid), seconds=10)
    assert not leases.alive(child.pid)
    child.wait()
    assert not leases.alive(child.pid)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_copy_killed_leaves_its_part_to_its_parent_at_once(
    day: tuple[Database, list[SpendLog]],  # noqa: F811
    lago: LagoEmulator,  # noqa: F811
) -> None:
    """kill -9 of a --workers copy: its parent claims its part at once (not after the 5-minute
    lease), ends the run whole and says what happened; exit 0, each row billed once."""
    database, rows = day
    lago.faults.latency(0.1)
    parent = worker([*COMMAND, "--workers", "2", "--part", "6h", "--lease", "300s"],
                    environment(database, lago))  # fmt: skip

    def copy_pid() -> int | None:
        holders = [holder or "" for _, status, holder, _ in parts_rows(database)
                   if status == "working"]  # fmt: skip
        pids = {int(holder.split(":")[1]) for holder in holders} - {parent.pid}
        return next(iter(pids), None)

    wait_for(lambda: copy_pid() is not None and committed(database) >= 2)
    pid = copy_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, said = parent.communicate(timeout=200)
    assert parent.returncode == 0, said
    assert "was killed by signal 9; the others did its part: the run is whole" in said
    billed_once(lago, rows)
    assert run_rows(database) == [(1, "succeeded")]
