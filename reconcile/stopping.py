"""SIGINT and SIGTERM as a request to stop: at once while nothing is sent, else between batches."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from reconcile.errors import Interrupted

log = logging.getLogger(__name__)

#: Ctrl-C, and what systemd, Kubernetes and `docker stop` send.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """Whether a signal asked the run to stop, and whether it may stop the code running now.

    Inside `interruptible()` (reading, listing, matching, the prompt: nothing is being sent or
    recorded) a signal raises Interrupted at once. Elsewhere it is only noted, and the job
    stops at its next safe point, between two batches, never in the middle of one; `check()`
    raises Interrupted there. A second signal ends the process at once with 128 + its number
    (130 for SIGINT, 143 for SIGTERM), as a kill would.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._interruptible = False
        self._came = threading.Event()

    @property
    def requested(self) -> bool:
        """Whether a signal came."""
        return self.signal is not None

    def error(self) -> Interrupted:
        """The Interrupted the signal stands for: its message is the signal's name."""
        return Interrupted(self.signal.name if self.signal is not None else "stopped")

    def check(self) -> None:
        """Raise Interrupted if a signal came."""
        if self.signal is not None:
            raise self.error()

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (between two tries of a request) unless a signal comes: Interrupted.

        A batch Lago keeps failing would otherwise hold a stopping run for the whole retry
        budget, past any grace period (Kubernetes gives 30 s). Its events stay `sending` in
        the ledger, for the next run to confirm against Lago, as after a kill.
        """
        if self._came.wait(seconds):
            raise self.error()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block a signal may end at once (raising Interrupted): it sends and writes nothing."""
        self.check()
        before, self._interruptible = self._interruptible, True
        try:
            yield
        finally:
            self._interruptible = before

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal must not cut short: it is noted, for the next `check()`."""
        before, self._interruptible = self._interruptible, False
        try:
            yield
        finally:
            self._interruptible = before

    def handle(self, number: int, _frame: FrameType | None = None) -> None:
        """The signal handler (also callable by tests, as if the signal had come)."""
        if self.signal is not None:  # asked twice: no more waiting for batches under way
            os._exit(128 + number)  # not a kill by the signal: PID 1 in a container ignores that
        self.signal = signal.Signals(number)
        self._came.set()
        if self._interruptible:
            self._interruptible = False
            raise self.error()
        log.warning(
            "%s: stopping once the batches under way are answered (send it again to stop at "
            "once, leaving their outcome for the next run to confirm)",
            self.signal.name,
        )


@contextlib.contextmanager
def stopping(stop: Stop | None = None) -> Iterator[Stop]:
    """Handle SIGINT and SIGTERM with `stop` (else a new Stop) in the block, then restore.

    Off the main thread, where Python cannot handle signals, nothing is installed and the
    Stop is never requested.
    """
    stop = stop or Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {number: signal.signal(number, stop.handle) for number in SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def terminable() -> Iterator[None]:
    """SIGTERM in the block raises Interrupted, as Ctrl-C raises KeyboardInterrupt.

    So every command unwinds on the signal systemd, Kubernetes and `docker stop` send:
    temporary files are removed and embedded servers stopped. `run` and `backfill` put their
    own handling (`stopping`) inside. Off the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(number: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(number).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
