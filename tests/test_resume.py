"""Slices, resume and progress: a window killed at any moment goes on from its last slice."""

import dataclasses
import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import pytest
from conftest import DAY
from test_reconcile_e2e import CODE, KEY, billable, billed_once, callback, committed_slices

from reconcile import commands
from reconcile.cli.options import parse_duration
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.margins import DEFAULT_MAX_DELAY, DEFAULT_SKEW
from reconcile.postgres import Database, connect
from reconcile.settings import ChargeBy, JobSettings
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.window import Window, parse_instant

COMMAND = [sys.executable, "-m", "reconcile", "backfill", "--since", "2026-11-01",
           "--until", "2026-11-02", "--yes", "--slice", "1h"]  # fmt: skip
#: What a resumed pass reads and lists again before its frontier: two reaches and a slice.
CONTEXT = 2 * max(DEFAULT_SKEW, DEFAULT_MAX_DELAY) + dt.timedelta(hours=1)


@pytest.fixture
def day(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> tuple[Database, list[SpendLog]]:
    rows = list(factory.day(DAY, 600))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    return litellm_db, rows


@pytest.fixture
def lago() -> Iterator[LagoEmulator]:
    with LagoEmulator(api_key=KEY) as emulator:
        yield emulator


def environment(database: Database, lago: LagoEmulator) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database.url(), "LAGO_API_BASE": lago.url,
            "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip


def last_frontier(database: Database) -> dt.datetime:
    """Where the last committed slice left the run's pass."""
    with connect(database) as connection:
        found = connection.execute(
            "SELECT decided_until FROM litellm_reconcile.run_slices ORDER BY slice DESC LIMIT 1"
        ).fetchone()
    assert found is not None
    decided: dt.datetime = found[0]
    return decided


def kill_after_slices(
    command: list[str], env: dict[str, str], database: Database, slices: int
) -> None:
    """Run `command` and SIGKILL it once the ledger holds `slices` committed slices."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 90
    while committed_slices(database) < slices:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def listed_from(lago: LagoEmulator, since: int) -> list[dt.datetime]:
    """Where each listing request after the `since`-th request began."""
    return [
        parse_instant(parse_qs(record.query)["timestamp_from"][0], option="timestamp_from")
        for record in lago.requests[since:]
        if record.method == "GET" and record.path.endswith("/events")
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_random_moments_a_run_resumes_and_bills_each_row_once(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator, seed: int
) -> None:
    """SIGKILL twice at random moments, each after some slices are committed: each next
    invocation goes on with the same run from its last slice, lists nothing it had listed
    but the margins before it, and every billable row is billed exactly once."""
    database, rows = day
    owed = billable(rows)
    callback(lago, [row for index, row in enumerate(owed) if index % 3], seed=seed)
    lago.faults.latency(0.02)
    rng = random.Random(seed)
    for _ in range(2):
        at = committed_slices(database) + rng.randint(1, 6)
        process = subprocess.Popen(
            COMMAND, env=environment(database, lago), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while committed_slices(database) < at and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.random() * 0.2)  # anywhere: reading, matching, sending, committing
        process.send_signal(signal.SIGKILL)
        process.wait()
    frontier, before = last_frontier(database), len(lago.requests)
    done = subprocess.run(
        COMMAND, env=environment(database, lago), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resuming run 1" in done.stderr
    billed_once(lago, rows)
    starts = listed_from(lago, before)
    assert starts and min(starts) >= frontier - CONTEXT  # the committed slices: never again
    with connect(database) as connection:
        runs = connection.execute(
            "SELECT id, status, jsonb_array_length(settings->'resumed') FROM litellm_reconcile.runs"
        ).fetchall()
        sent = connection.execute(
            "SELECT count(*) FROM litellm_reconcile.sent_events WHERE status = 'sent'"
        ).fetchone()
    assert runs[0][:2] == (1, "succeeded") and len(runs) == 1 and runs[0][2] >= 1
    assert sent == (len(owed) - len(owed[1::3]) - len(owed[2::3]),)


def test_restart_starts_over_and_other_settings_do_not_resume(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator
) -> None:
    database, rows = day
    env = environment(database, lago)
    lago.faults.latency(0.02)
    kill_after_slices(COMMAND, env, database, 3)
    other = subprocess.run([*COMMAND, "--max-delay", "30m"], env=env, capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "had other settings (--max-delay): starting over" in other.stderr
    again = subprocess.run([*COMMAND, "--restart"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr
    billed_once(lago, rows)
    with connect(database) as connection:
        statuses = connection.execute(
            "SELECT status FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()
    assert statuses == [("failed",), ("succeeded",), ("succeeded",)]  # the killed one: found


@pytest.mark.parametrize("shown", [True, False])
def test_progress_is_a_bar_for_people_and_a_line_per_slice_for_cron(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator, shown: bool
) -> None:
    database, _ = day
    done = subprocess.run(
        [*COMMAND, "--dry-run", "--progress" if shown else "--no-progress"],
        env=environment(database, lago), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # a dry run with rows missing
    lines = [line for line in done.stderr.splitlines() if "slice " in line and " of " in line]
    if shown:
        assert "slice/s" in done.stderr or "s/slice" in done.stderr  # tqdm's rate
        assert re.search(r"\b(\d+)/\1 \[", done.stderr)  # every slice done
        assert "rows=" in done.stderr and "sent=0" in done.stderr
        assert not lines
    else:
        assert "slice/s" not in done.stderr
        assert len(lines) >= 24  # a day of one-hour slices, one line each
        assert not any("slice 0 of" in line for line in lines)  # counted from the first done
        assert "rows read" in lines[-1] and "events listed" in lines[-1]


def test_a_slice_that_does_not_divide_a_day_is_refused(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator
) -> None:
    database, _ = day
    done = subprocess.run(
        [*COMMAND[:-1], "7m"], env=environment(database, lago), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--slice 7m: give a whole number of seconds" in done.stderr


def test_windows_resume_only_their_own_run(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator
) -> None:
    """A cut-short run over another window is not this one's to go on with."""
    database, rows = day
    env = environment(database, lago)
    half = [*COMMAND[:7], "2026-11-01T12:00:00Z", *COMMAND[8:]]
    lago.faults.latency(0.02)
    kill_after_slices(half, env, database, 2)
    whole = subprocess.run(COMMAND, env=env, capture_output=True, text=True, timeout=120,
                           check=False)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    assert "resuming" not in whole.stderr
    billed_once(lago, rows)
    with connect(database) as connection:
        statuses = connection.execute(
            "SELECT status FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()
    assert statuses == [("failed",), ("succeeded",)]


@pytest.mark.parametrize("size", ["5m", "15m", "2h"])
@pytest.mark.parametrize("since", ["2026-11-01T03:05:00Z", "2026-11-01T00:17:00Z"])
def test_any_slice_over_any_window_gives_the_answer_of_a_day_at_once(
    day: tuple[Database, list[SpendLog]], lago: LagoEmulator, size: str, since: str
) -> None:
    """Slices shorter than the margins, windows starting just past a slice's start: the same
    counts as one slice of a day."""
    database, rows = day
    callback(lago, billable(rows)[::2])
    window = Window(
        parse_instant(since, option="--since"),
        parse_instant("2026-11-01T09:00:00Z", option="--until"),
    )
    found = []
    for length in (parse_duration(size, option="--slice"), dt.timedelta(days=1)):
        settings = JobSettings(mode="backfill", window=window, charge_by=ChargeBy.END_USER_ID,
                               code=CODE, dry_run=True, slice=length)  # fmt: skip
        with LagoClient(lago.url, KEY) as client:
            summary = commands.backfill(
                database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
                settings, client=client,
            )  # fmt: skip
        found.append((summary.expected, summary.listed, summary.matched_by_fingerprint,
                      summary.missing, summary.tally.rows))  # fmt: skip
    assert found[0] == found[1] and found[0][3] > 0


def test_a_resumed_run_takes_the_events_its_committed_slices_sent_as_theirs(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory,
    lago: LagoEmulator,
) -> None:  # fmt: skip
    """Rows ending seconds before each hour have their events sent by that hour's slice; the
    resumed pass lists them again beside rows it holds as decided: they are the run's own
    events, not duplicates nobody explains."""
    rows = list(factory.day(DAY, 200))
    template = billable(rows)[0]
    midnight = dt.datetime.combine(DAY, dt.time())
    edges = [
        dataclasses.replace(
            template, request_id=f"edge-{hour}", litellm_call_id=f"edge-call-{hour}",
            start=midnight + dt.timedelta(hours=hour, minutes=59),
            end=midnight + dt.timedelta(hours=hour, minutes=59, seconds=30),
        )
        for hour in range(24)
    ]  # fmt: skip
    insert(*rows, *edges)
    commands.migrate(commands.StateSettings(litellm_db))
    env = environment(litellm_db, lago)
    lago.faults.latency(0.02)
    for slices in (3, 9):
        kill_after_slices(COMMAND, env, litellm_db, slices)
    done = subprocess.run(COMMAND, env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resuming run 1" in done.stderr
    billed_once(lago, [*rows, *edges])
    with connect(litellm_db) as connection:
        found = connection.execute("SELECT counts FROM litellm_reconcile.runs").fetchone()
    assert found is not None
    assert sum(value["events"] for value in found[0]["unexplained"].values()) == 0
