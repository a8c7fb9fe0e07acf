"""SIGTERM and SIGINT at random moments of a real `reconcile backfill` over real Postgres and the
slow emulator: it stops between batches, says what it sent and what remains, records the run
`interrupted` with the counts Lago holds, leaves nothing `sending`, exits 5; running again bills
every row exactly once. Also the prompt: end of input or SIGTERM there sends nothing, exits 5."""

import datetime as dt
import functools
import os
import pty
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DAY, ENV_NAMES
from test_reconcile_e2e import KEY, billable, billed_once

from reconcile import commands
from reconcile.attribute import Tally
from reconcile.errors import Interrupted
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect
from reconcile.results import RunSummary
from reconcile.sending import interrupted
from reconcile.settings import ChargeBy, JobSettings
from reconcile.stopping import Stop
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.transaction_id import PREFIX
from reconcile.window import UTC, Window

CODE = "openai_tokens"
LATENCY = 0.25  # seconds per Lago answer: a few batches a second, time to signal mid-way
COMMAND = [sys.executable, "-m", "reconcile", "backfill", "--since", "2026-11-01",
           "--until", "2026-11-02"]  # fmt: skip
pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def logs(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> list[SpendLog]:
    """A day of about 2,600 billable rows: 26 batches of 100."""
    rows = list(factory.day(DAY, 3000))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    return rows


@pytest.fixture
def slow_lago(lago: LagoEmulator) -> LagoEmulator:
    lago.faults.latency(LATENCY)
    return lago


def environment(database: Database, lago: LagoEmulator) -> dict[str, str]:
    kept = {name: value for name, value in os.environ.items() if name not in ENV_NAMES}
    return {**kept, "DATABASE_URL": database.url(), "LAGO_API_BASE": lago.url,
            "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip


def backfill(database: Database, lago: LagoEmulator) -> subprocess.Popen[str]:
    """`reconcile backfill --yes` of the day in a real process, its stderr piped."""
    return subprocess.Popen(
        [*COMMAND, "--yes"], env=environment(database, lago),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def ours(lago: LagoEmulator) -> int:
    return sum(event["transaction_id"].startswith(PREFIX) for event in lago.stored_events())


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, "reconcile ended before the moment to signal it"
        assert time.monotonic() < deadline, "the moment to signal never came"
        time.sleep(0.005)


def ledger(database: Database) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """The runs (id, status, counts) and the sent_events rows per status."""
    with connect(database) as connection:
        runs = connection.execute(
            "SELECT id, status, counts FROM litellm_reconcile.runs ORDER BY id"
        ).fetchall()
        statuses = connection.execute(
            "SELECT status, count(*) FROM litellm_reconcile.sent_events GROUP BY status"
        ).fetchall()
    return runs, dict(statuses)


def interrupted_as_recorded(database: Database, lago: LagoEmulator, stderr: str) -> int:
    """The run is `interrupted` with what Lago holds as its counts; returns how many it sent."""
    (run_id, status, counts), *_ = ledger(database)[0]
    held = ours(lago)
    assert status == "interrupted"
    assert counts["sent"] + counts["already_in_lago"] == held
    assert counts["unsent"] == counts["missing"] - held
    statuses = ledger(database)[1]
    assert "sending" not in statuses  # the events never sent left no trace to confirm
    assert statuses.get("sent", 0) == counts["sent"]
    assert f"{counts['sent']:,} event(s) sent to Lago" in stderr, stderr
    assert f"run {run_id} is recorded as interrupted" in stderr
    return held


def rerun(database: Database, lago: LagoEmulator, rows: list[SpendLog]) -> None:
    """The same window again, Lago fast again: it completes, every row billed exactly once."""
    lago.faults.clear()
    settings = JobSettings(
        mode="backfill",
        window=Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC)),
        charge_by=ChargeBy.END_USER_ID,
        code=CODE,
    )
    with LagoClient(lago.url, KEY) as client:
        summary = commands.backfill(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            settings, client=client,
        )  # fmt: skip
    assert summary.complete
    billed_once(lago, rows)
    assert set(ledger(database)[1]) == {"sent"}


@pytest.mark.parametrize(
    ("sign", "seed"),
    [(signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGTERM-1", "SIGINT-2"],
)
def test_a_signal_while_sending_stops_between_batches(
    litellm_db: Database,
    logs: list[SpendLog],
    slow_lago: LagoEmulator,
    sign: signal.Signals,
    seed: int,
) -> None:
    """At a random moment of the sending: exit 5, the sent recorded, the rest sent next time."""
    rng = random.Random(seed)
    owed = len(billable(logs))
    after = rng.randrange(1, owed // 2)  # events Lago holds when the signal goes
    process = backfill(litellm_db, slow_lago)
    wait_for(lambda: ours(slow_lago) >= after, process)
    time.sleep(rng.uniform(0, LATENCY))
    process.send_signal(sign)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 5, stderr
    # Between two batches of a slice, or while the next slice is read: what was sent is said.
    assert re.search(rf"interrupted by {sign.name} (between two batches|while reading and "
                     r"matching): [\d,]+ event\(s\) sent to Lago", stderr), stderr  # fmt: skip
    held = interrupted_as_recorded(litellm_db, slow_lago, stderr)
    assert after <= held < owed
    rerun(litellm_db, slow_lago, logs)


def test_a_signal_before_sending_ends_the_run_cleanly(
    litellm_db: Database, logs: list[SpendLog], slow_lago: LagoEmulator
) -> None:
    """Ctrl-C while Lago is listed (nothing sent yet): exit 5, the run interrupted, nothing sent."""
    process = backfill(litellm_db, slow_lago)
    wait_for(lambda: slow_lago.request_count > 0, process)
    time.sleep(random.Random(4).uniform(0, 0.8 * LATENCY))  # before Lago's first answer
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 5, stderr
    assert "interrupted by SIGINT while reading and matching, before anything was sent" in stderr
    assert "Traceback" not in stderr
    [(_, status, counts)], statuses = ledger(litellm_db)
    assert (status, statuses, ours(slow_lago)) == ("interrupted", {}, 0)
    assert counts["sent"] == 0
    rerun(litellm_db, slow_lago, logs)


def batch_after(lago: LagoEmulator, sent: int) -> bool:
    """Whether a batch came back since Lago held `sent` of ours."""
    return ours(lago) >= sent + 100


def test_a_second_signal_exits_at_once_and_the_next_run_confirms(
    litellm_db: Database, logs: list[SpendLog], slow_lago: LagoEmulator
) -> None:
    """Two SIGTERMs while a batch is under way: 143 at once, the batch left `sending`; the next
    run (resuming the same run) confirms it; nothing billed twice. A first SIGTERM that finds
    the run reading instead ends it at once (5): try again, from where it stopped."""
    for _ in range(8):
        process = backfill(litellm_db, slow_lago)
        wait_for(functools.partial(batch_after, slow_lago, ours(slow_lago)), process)
        process.send_signal(signal.SIGTERM)
        said = ""
        assert process.stderr is not None
        while "stopping once the batches under way" not in said and process.poll() is None:
            if select.select([process.stderr], [], [], 0.01)[0]:
                said += os.read(process.stderr.fileno(), 65536).decode()
        if process.poll() is None:  # stopping, a batch under way: the second one cuts it off
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 143, said + stderr
            assert "sending" in ledger(litellm_db)[1]  # the next run confirms them
            break
        process.communicate(timeout=30)
        assert process.returncode == 5
    else:
        pytest.fail("no SIGTERM found a batch under way in eight runs")
    time.sleep(2 * LATENCY)  # Lago finishes storing what it received, whoever hung up
    rerun(litellm_db, slow_lago, logs)


def test_a_signal_while_lago_keeps_failing_ends_the_retries_at_once(
    litellm_db: Database, logs: list[SpendLog], slow_lago: LagoEmulator
) -> None:
    """Lago down mid-send: a SIGTERM ends the waits between tries, not the 5-minute budget."""
    process = backfill(litellm_db, slow_lago)
    wait_for(lambda: ours(slow_lago) >= 200, process)
    slow_lago.faults.server_error(10**6)  # every request from now on: 503
    time.sleep(3)  # the batches under way fail and wait to be tried again
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 5, stderr
    assert time.monotonic() - signalled < 10  # a grace period's worth, not --lago-retry-budget
    [(_, status, counts)], statuses = ledger(litellm_db)
    assert status == "interrupted"
    assert counts["sent"] == statuses.get("sent", 0) >= 200
    assert "run 1 is recorded as interrupted" in stderr
    rerun(litellm_db, slow_lago, logs)  # the batches cut off are confirmed, then the rest sent


@pytest.fixture
def prompt(litellm_db: Database, logs: list[SpendLog], lago: LagoEmulator) -> Iterator[Any]:
    """`reconcile backfill` on a terminal, waiting at its confirmation prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        COMMAND, env=environment(litellm_db, lago), stdin=terminal,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(terminal)
    assert process.stderr is not None
    said = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in said:
        assert time.monotonic() < deadline and process.poll() is None, said.decode()
        if select.select([process.stderr], [], [], 0.1)[0]:
            said += os.read(process.stderr.fileno(), 65536)
    time.sleep(0.2)  # at the prompt's read
    yield process, controller
    os.close(controller)


@pytest.mark.parametrize("answer", ["end of input", "SIGTERM"])
def test_no_answer_at_the_prompt_sends_nothing(
    litellm_db: Database, logs: list[SpendLog], lago: LagoEmulator, prompt: Any, answer: str
) -> None:
    process, controller = prompt
    if answer == "SIGTERM":
        process.send_signal(signal.SIGTERM)
    else:
        os.write(controller, b"\x04")  # Ctrl-D
    _, stderr = process.communicate(timeout=30)
    stderr = stderr.decode()
    assert process.returncode == 5, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    cause = "by SIGTERM" if answer == "SIGTERM" else "(no answer at the prompt, taken as no)"
    assert f"interrupted {cause} before sending anything: 0 event(s) sent" in stderr
    [(_, status, _)], statuses = ledger(litellm_db)
    assert (status, statuses, ours(lago)) == ("interrupted", {}, 0)


def test_an_interrupted_nightly_run_is_no_coverage(
    litellm_db: Database, logs: list[SpendLog], lago: LagoEmulator
) -> None:
    """The nightly job interrupted at once: its next run starts where the interrupted one did."""
    since = dt.datetime.combine(DAY, dt.time(), tzinfo=UTC)
    now = since + dt.timedelta(days=2)

    def nightly(stop: Stop | None = None) -> RunSummary | None:
        settings = JobSettings(
            mode="run", window=Window(since, now), charge_by=ChargeBy.END_USER_ID, code=CODE
        )
        with LagoClient(lago.url, KEY) as client:
            return commands.run(
                litellm_db, commands.LagoSettings(lago.url, KEY),
                commands.StateSettings(litellm_db), settings,
                commands.Schedule(first_since=since), now=now, client=client, stop=stop,
            )  # fmt: skip

    stop = Stop()
    stop.handle(signal.SIGTERM)  # as if it came while the lock was being taken
    with pytest.raises(Interrupted, match="interrupted by SIGTERM while reading"):
        nightly(stop)
    summary = nightly()
    assert summary is not None
    assert summary.settings.window.since == since
    billed_once(lago, logs)
    runs = ledger(litellm_db)[0]
    assert [status for _, status, _ in runs] == ["interrupted", "succeeded"]
    assert runs[0][2]["sent"] == 0


def test_cron_reads_exit_5_as_an_interruption(tmp_path: Path) -> None:
    """alert-on-exit: a first 5 warns, a repeated one alerts; the code passes through."""
    script = Path(__file__).resolve().parents[1] / "cron" / "alert-on-exit.sh"
    env = {**os.environ, "RECONCILE_ALERT_STATE": str(tmp_path / "last-exit")}
    said = []
    for _ in range(2):
        done = subprocess.run(
            ["sh", str(script), "sh", "-c", "exit 5"], env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert done.returncode == 5
        said.append(done.stdout)
    assert said[0].startswith("WARNING reconcile run was interrupted (exit 5")
    assert said[1].startswith("ALERT reconcile run was interrupted 2 runs in a row")


def test_the_nightly_run_resumes_an_interrupted_night_from_where_it_began(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory,
    slow_lago: LagoEmulator,
) -> None:  # fmt: skip
    """`reconcile run` stopped by SIGTERM mid-way: the next run covers the same window, whole."""
    now = dt.datetime.now(UTC).replace(tzinfo=None)
    rows = [factory.success(now - dt.timedelta(hours=20) + index * dt.timedelta(seconds=20))
            for index in range(2700)]  # fmt: skip
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    command = [sys.executable, "-m", "reconcile", "run", "--yes"]
    env = environment(litellm_db, slow_lago)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    wait_for(lambda: ours(slow_lago) >= 500, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 5, stderr
    interrupted_as_recorded(litellm_db, slow_lago, stderr)
    slow_lago.faults.clear()
    again = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr
    billed_once(slow_lago, rows)
    with connect(litellm_db) as connection:
        windows = connection.execute(
            "SELECT status, window_since, covered_until IS NOT NULL FROM litellm_reconcile.runs "
            "ORDER BY id"
        ).fetchall()
    assert [(status, covered) for status, _, covered in windows] == [
        ("interrupted", False),
        ("succeeded", True),
    ]
    assert windows[0][1] == windows[1][1]


def test_a_signal_after_the_last_batch_lets_the_run_end_as_it_is(
    litellm_db: Database, logs: list[SpendLog], lago: LagoEmulator
) -> None:
    """Everything was sent when the signal came: nothing to stop, the run succeeded."""
    stop = Stop()
    owed = len(billable(logs))

    class SignalledAfterSending(LagoClient):
        def send_events(self, *args: Any, **kwargs: Any) -> Any:
            report = super().send_events(*args, **kwargs)
            if ours(lago) == owed:  # the last slice's last batch
                stop.handle(signal.SIGTERM)  # noted, as during the last answer
            return report

    settings = JobSettings(
        mode="backfill",
        window=Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC)),
        charge_by=ChargeBy.END_USER_ID,
        code=CODE,
    )
    with SignalledAfterSending(lago.url, KEY) as client:
        summary = commands.backfill(
            litellm_db, commands.LagoSettings(lago.url, KEY), commands.StateSettings(litellm_db),
            settings, client=client, stop=stop,
        )  # fmt: skip
    assert summary.complete
    billed_once(lago, logs)
    [(_, status, _)], statuses = ledger(litellm_db)
    assert (status, set(statuses)) == ("succeeded", {"sent"})


@pytest.fixture
def job_role(litellm_db: Database, logs: list[SpendLog]) -> Iterator[Database]:
    """A role with exactly the grants the README gives a role that runs the job."""
    role = f"job_{random.randrange(10**8)}"
    with connect(litellm_db, autocommit=True) as connection:
        for statement in (
            f"CREATE ROLE {role} LOGIN PASSWORD 'pw'",
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT USAGE ON SCHEMA litellm_reconcile TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA litellm_reconcile "
            f"TO {role}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA litellm_reconcile TO {role}",
        ):
            connection.execute(statement)  # type: ignore[call-overload]
    try:
        yield litellm_db.replace(user=role, password="pw")
    finally:
        with connect(litellm_db, autocommit=True) as connection:
            connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")  # type: ignore[call-overload]


def test_the_documented_grants_are_enough_to_stop_between_batches(
    litellm_db: Database, job_role: Database, logs: list[SpendLog], slow_lago: LagoEmulator
) -> None:
    """Stopping forgets what was never sent (DELETE): the job's grants cover it."""
    process = backfill(job_role, slow_lago)
    wait_for(lambda: ours(slow_lago) >= 300, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 5, stderr
    interrupted_as_recorded(litellm_db, slow_lago, stderr)


@pytest.mark.parametrize(
    ("reason", "phase", "sent", "said"),
    [
        ("SIGTERM", "sending", 3, "interrupted by SIGTERM between two batches: 3 event(s) sent"),
        # SIGTERM outside `stopping` (the demo): the same words, not "interrupted (interrupted"
        ("interrupted by SIGTERM", "reading", 0,
         "interrupted by SIGTERM while reading and matching, before anything was sent"),
        ("end of input", "asking", 0, "interrupted (end of input) before sending anything: 0"),
    ],
)  # fmt: skip
def test_an_interruption_is_said_once_whichever_way_the_signal_came(
    reason: str, phase: str, sent: int, said: str
) -> None:
    window = Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))
    settings = JobSettings(mode="backfill", window=window, charge_by=ChargeBy.END_USER_ID, code="c")
    summary = RunSummary(run_id=7, settings=settings, tally=Tally(), sent=sent)
    line = interrupted(reason, summary, phase)
    assert line.startswith(said), line
    assert "run 7 is recorded as interrupted" in line
