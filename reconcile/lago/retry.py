"""When to try a Lago request again, and how long to wait: the one place backoff is decided."""

from __future__ import annotations

import dataclasses
import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping

#: Statuses worth another try: Lago Cloud's rate limit and a server or gateway in trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Seconds a client keeps trying through an outage before it gives up (RECONCILE_LAGO_RETRY_BUDGET).
DEFAULT_BUDGET = 300.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, within one time budget per outage (`total_seconds`)."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    total_seconds: float = DEFAULT_BUDGET

    def delay(self, attempt: int, headers: Mapping[str, str], *, rng: random.Random) -> float:
        """Seconds to wait before try number `attempt + 1` (`attempt` counts from 1).

        The server's own word wins when it gives one (X-RateLimit-Reset, Retry-After); else a
        random wait up to first_delay * 2^(attempt-1), capped, so that concurrent clients
        spread out instead of retrying in step.
        """
        told = server_delay(headers)
        if told is not None:
            return min(told, self.max_delay)
        ceiling = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


def server_delay(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """What the server asked us to wait, in seconds, or None when it did not say."""
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    for name in ("x-ratelimit-reset", "retry-after"):
        value = lowered.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


class Outage:
    """One client's current run of failures, shared by its threads: one budget for them all.

    It starts at the first failure after a success and ends at the next success; every failed
    try counts, in any thread. So concurrent requests give up together once `budget` seconds
    have gone by, and the message can say how long and how many tries it truly was.
    """

    def __init__(self, budget: float, clock: Callable[[], float]) -> None:
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self.tries = 0

    def failed(self) -> tuple[float, float]:
        """Record a failed try: (seconds since the outage began, seconds left of the budget)."""
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            self.tries += 1
            elapsed = now - self._started
            return elapsed, self.budget - elapsed

    def ended(self) -> None:
        """A request succeeded: the next failure starts a new outage."""
        with self._lock:
            self._started, self.tries = None, 0
