"""SIGTERM in the commands that send nothing: they unwind as on Ctrl-C, leave nothing behind, exit 5."""

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DAY, ENV_NAMES, LAGO_KEY

from reconcile.errors import Interrupted
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database
from reconcile.stopping import terminable
from reconcile.testing.factory import SpendLogFactory

pytestmark = pytest.mark.usefixtures("clean_environment")


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    kept = {name: value for name, value in os.environ.items() if name not in ENV_NAMES}
    return subprocess.Popen(
        [sys.executable, "-m", "reconcile", *args], env={**kept, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def embedded_servers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("reconcile-pg-*"))


def test_sigterm_stops_the_demo_and_its_embedded_postgres() -> None:
    before = embedded_servers()
    process = start(["demo", "--rows", "2000"])
    deadline = time.monotonic() + 60
    while not embedded_servers() - before:  # the server's directory: it is starting
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 5, stderr
    assert "reconcile: interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert embedded_servers() == before  # stopped and deleted


def test_sigterm_during_a_report_leaves_no_partial_file(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    lago: LagoEmulator,
    tmp_path: Path,
) -> None:
    insert(*factory.day(DAY, 500))
    lago.faults.latency(0.5)  # the report is still listing when the signal comes
    target = tmp_path / "report.xlsx"
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url,
           "LAGO_API_KEY": LAGO_KEY, "LAGO_API_EVENT_CODE": "openai_tokens"}  # fmt: skip
    args = ["report", "--since", "2026-11-01", "--until", "2026-11-02", "--format", "xlsx"]
    process = start([*args, "-o", str(target)], env)
    deadline = time.monotonic() + 60
    while lago.request_count == 0:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 5, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the report nor its temporary file


def test_sigterm_is_the_emulators_normal_end() -> None:
    process = start(["lago-emulator", "--port", "0"])
    assert process.stdout is not None
    assert process.stdout.readline().startswith("http://")  # serving
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Lago emulator stopped" in stderr


class SignallingStream:
    """A log stream whose write is where SIGTERM lands, as it did mid-`log.info` in CI."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        self.written.append(text)

    def flush(self) -> None:
        pass


def test_sigterm_during_a_log_line_is_not_swallowed_by_logging() -> None:
    # logging.Handler.emit catches Exception and prints "--- Logging error ---": a signal
    # exception that is an Exception would vanish there and the command carry on (the emulator
    # then waited for ever). Interrupted is a BaseException, like KeyboardInterrupt.
    handler = logging.StreamHandler(SignallingStream())
    logger = logging.getLogger("reconcile.test.signalled")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with pytest.raises(Interrupted, match="SIGTERM"), terminable():  # noqa: PT012
            logger.warning("a line")
            time.sleep(5)  # not reached: the signal ends the block at the log line
    finally:
        logger.removeHandler(handler)
