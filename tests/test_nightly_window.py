import datetime as dt

import pytest

from reconcile.commands import Schedule, nightly_window
from reconcile.errors import ConfigError
from reconcile.window import UTC

NOW = dt.datetime(2026, 11, 27, 2, 15, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("last_until", "schedule", "since", "until"),
    [
        (
            None,
            Schedule(),
            NOW - dt.timedelta(minutes=15) - 24 * HOUR,
            NOW - dt.timedelta(minutes=15),
        ),
        (
            None,
            Schedule(first_since=NOW - 72 * HOUR),
            NOW - 72 * HOUR,
            NOW - dt.timedelta(minutes=15),
        ),
        (NOW - 24 * HOUR, Schedule(), NOW - 48 * HOUR, NOW - dt.timedelta(minutes=15)),
        (NOW - 24 * HOUR, Schedule(lookback=2 * HOUR), NOW - 26 * HOUR, NOW - HOUR),
    ],
)
def test_the_window_starts_where_the_last_coverage_ended_minus_the_lookback(
    last_until: dt.datetime | None, schedule: Schedule, since: dt.datetime, until: dt.datetime
) -> None:
    settle = HOUR if schedule.lookback == 2 * HOUR else dt.timedelta(minutes=15)
    window = nightly_window(last_until, schedule, NOW, settle)
    assert window is not None
    assert (window.since, window.until) == (since, until)


def test_nothing_to_do_right_after_a_run() -> None:
    assert (
        nightly_window(NOW - dt.timedelta(minutes=5), Schedule(lookback=dt.timedelta(0)), NOW)
        is None
    )


def test_windows_beyond_retention_are_refused_with_a_way_out() -> None:
    with pytest.raises(ConfigError) as raised:
        nightly_window(NOW - 40 * 24 * HOUR, Schedule(), NOW)
    message = str(raised.value)
    assert "more than 30 days ago: LiteLLM may have deleted those spend logs" in message
    assert "reconcile backfill --since 2026-10-17T02:15:00Z --until 2026-10-28T02:15:00Z" in message
    assert "`reconcile run --since 2026-10-28T02:15:00Z` once" in message
    assert (
        nightly_window(NOW - 40 * 24 * HOUR, Schedule(retention=dt.timedelta(days=60)), NOW)
        is not None
    )


def test_after_a_long_outage_the_run_resumes_at_since_within_the_retention() -> None:
    """Once the older part is backfilled, `run --since <horizon>` moves the nightly job on."""
    resume = NOW - 29 * 24 * HOUR
    window = nightly_window(NOW - 40 * 24 * HOUR, Schedule(first_since=resume), NOW)
    assert window is not None
    assert window.since == resume
    with pytest.raises(ConfigError):  # a --since beyond the retention does not help
        nightly_window(NOW - 40 * 24 * HOUR, Schedule(first_since=NOW - 35 * 24 * HOUR), NOW)
