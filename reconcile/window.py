"""The half-open UTC time window [since, until) a run covers, and how users write its edges."""

from __future__ import annotations

import dataclasses
import datetime as dt

from reconcile.errors import ConfigError

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = dt.timedelta(milliseconds=1)


def to_ms(moment: dt.datetime) -> int:
    """Unix milliseconds of an aware datetime: the unit rows and events are compared in.

    Exact integer arithmetic (a float timestamp times 1000 can land a millisecond short).
    """
    return (moment - EPOCH) // MILLISECOND


def from_ms(milliseconds: int) -> dt.datetime:
    """The aware UTC datetime of Unix milliseconds; the inverse of `to_ms`."""
    return EPOCH + milliseconds * MILLISECOND


def duration_ms(duration: dt.timedelta) -> int:
    """A duration in whole milliseconds (sub-millisecond parts dropped)."""
    return duration // MILLISECOND


@dataclasses.dataclass(frozen=True)
class Window:
    """[since, until) on the spend logs' `"startTime"`; both edges are aware UTC datetimes."""

    since: dt.datetime
    until: dt.datetime

    def __post_init__(self) -> None:
        for edge in (self.since, self.until):
            if edge.utcoffset() != dt.timedelta(0):
                raise ValueError(f"window edges must be UTC datetimes, got {edge!r}")
        if self.since >= self.until:
            raise ConfigError(
                f"the window is empty: --since {format_instant(self.since)} is not before "
                f"--until {format_instant(self.until)}; give an earlier --since or a later --until"
            )

    @property
    def naive_since(self) -> dt.datetime:
        """`since` as LiteLLM stores times: naive UTC (`timestamp without time zone`)."""
        return self.since.replace(tzinfo=None)

    @property
    def naive_until(self) -> dt.datetime:
        """`until` as LiteLLM stores times: naive UTC."""
        return self.until.replace(tzinfo=None)

    def __str__(self) -> str:
        return f"[{format_instant(self.since)}, {format_instant(self.until)})"


def parse_instant(text: str, *, option: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    """Read `YYYY-MM-DD` (midnight in `zone`) or ISO-8601 (naive: in `zone`) as aware UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            parsed = dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
        else:
            parsed = dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a date or time: write YYYY-MM-DD or an ISO-8601 "
            "datetime such as 2026-11-01T06:00:00Z or 2026-11-01T08:00:00+02:00 "
            f"(no offset = {zone})"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def format_instant(instant: dt.datetime) -> str:
    """An aware datetime as compact ISO-8601 UTC, e.g. `2026-11-01T00:00:00Z`."""
    text = instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return text.removesuffix(".000") + "Z"
