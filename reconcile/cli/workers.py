"""`--workers N`: the same command in N - 1 more local processes, workers of one run."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

_PATIENCE = dt.timedelta(minutes=2)  # a child stops between two batches: seconds, as a rule


class LocalWorkers:
    """The processes this one starts, once it is in a run, to work on it beside it."""

    def __init__(self, workers: int, part: dt.timedelta | None) -> None:
        self.wanted = workers - 1 if part is not None else 0
        self.part = part
        self.children: list[subprocess.Popen[bytes]] = []
        self.codes: list[int] = []
        """Their exit codes, once the block has ended (a negative one: killed by that signal)."""

    def start(self, run_id: int) -> None:
        """Start them on run `run_id` (`--join-run`): they never start or resume one."""
        if not self.wanted or self.part is None or self.children:
            return
        argv = [sys.executable, "-m", "reconcile", *sys.argv[1:], "--workers", "1",
                "--part", f"{int(self.part.total_seconds())}s", "--no-progress",
                "--join-run", str(run_id)]  # fmt: skip
        self.children = [
            subprocess.Popen(  # noqa: S603 - this very command, again
                argv, stdout=subprocess.DEVNULL, env=os.environ.copy(), start_new_session=True
            )
            for _ in range(self.wanted)
        ]
        log.info("started %s more worker process(es) on run %s: %s", len(self.children), run_id,
                 ", ".join(str(child.pid) for child in self.children))  # fmt: skip

    def stop(self, signum: signal.Signals) -> None:
        """Pass this process's stop on to them, and wait until they have left the run.

        Called before this process gives its own part up, so that it is the last to leave and
        records the run's end with its own reason (an error, or the signal it got); a child
        that takes longer than _PATIENCE to stop is killed.
        """
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)
        for child in self.children:
            try:
                child.wait(_PATIENCE.total_seconds())
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextlib.contextmanager
def local_workers(workers: int, part: dt.timedelta | None) -> Iterator[LocalWorkers]:
    """`workers - 1` copies of this command, started by `start` once this one is in a run.

    They run with `--workers 1 --part <part>` (the same parts as this one's) and
    `--join-run <id>`, so that they join that run only: one that has ended by the time they
    are in is left alone (a nightly run would otherwise start the next). No progress bar;
    each in a session of its own (a terminal's Ctrl-C reaches this process only, which
    passes it on once); their stdout goes nowhere (this process prints the run's summary).
    Their exit codes are in `codes` once the block ends; a block cut short (a signal, an
    error) passes SIGTERM on to those still running first (`stop` passes the signal on
    sooner, from inside the run).
    """
    started = LocalWorkers(workers, part)
    try:
        yield started
    except BaseException:
        for child in started.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in started.children:
            child.wait()
        raise
    started.codes.extend(child.wait() for child in started.children)
