"""When to try a Lago request again, and how long to wait: the one place backoff is decided."""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from collections.abc import Mapping

#: Statuses worth another try: Lago Cloud's rate limit and a server or gateway in trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, within a total time budget per request."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    total_seconds: float = 300.0

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
