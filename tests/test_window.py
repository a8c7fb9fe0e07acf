import datetime as dt

import pytest

from reconcile.errors import ConfigError
from reconcile.window import UTC, Window, format_instant, parse_instant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", dt.datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T06:30:00", dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01 06:30", dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01T06:30:00Z", dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00+02:00", dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01T00:30:00-05:00", dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        ("2026-10-31T23:00:00-01:00", dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
        ("2026-11-01T06:30:00.123", dt.datetime(2026, 11, 1, 6, 30, 0, 123000, tzinfo=UTC)),
        (" 2026-11-01 ", dt.datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_instants_are_read_as_utc(text: str, expected: dt.datetime) -> None:
    parsed = parse_instant(text, option="--since")
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "2026-11-31", "11/01/2026", "1793491200"]
)
def test_bad_instants_name_the_option_and_the_formats(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_instant(text, option="--until")
    assert str(raised.value).startswith(f"--until {text!r} is not a date or time")
    assert "YYYY-MM-DD" in str(raised.value)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-11-02", "2026-11-01"),
        ("2026-11-01", "2026-11-01"),
        ("2026-11-01T02:00:00+02:00", "2026-11-01"),
    ],
)
def test_empty_windows_are_refused(since: str, until: str) -> None:
    with pytest.raises(ConfigError, match="the window is empty"):
        Window(parse_instant(since, option="--since"), parse_instant(until, option="--until"))


def test_windows_hold_utc_edges_and_print_half_open() -> None:
    window = Window(
        parse_instant("2026-11-01", option=""), parse_instant("2026-11-01T12:00:00.5", option="")
    )
    assert window.naive_since == dt.datetime(2026, 11, 1)
    assert window.naive_until == dt.datetime(2026, 11, 1, 12, 0, 0, 500000)
    assert str(window) == "[2026-11-01T00:00:00Z, 2026-11-01T12:00:00.500Z)"
    with pytest.raises(ValueError, match="UTC"):
        Window(
            dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 2)
        )  # naive edges are a programming error


def test_format_instant_converts_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert format_instant(dt.datetime(2026, 11, 1, 1, 0, tzinfo=paris)) == "2026-11-01T00:00:00Z"
