"""What Ruby, Rails and Kaminari do to a Lago request's values: casts, dates, pagination."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal
from typing import Any

US = 10**6
PER_PAGE = 100  # Pagination::PER_PAGE: the controller's per_page when none is given
KAMINARI_PER_PAGE = 25  # Kaminari's default, kept when per_page is not a number
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEAVES = frozenset({str, int, float, bool, type(None)})  # JSON values holding no other
_AMOUNT = Context(prec=60, rounding=ROUND_HALF_UP)  # room for decimal(40, 15)
_WIDE = Context(prec=100)  # exact arithmetic on any timestamp a client sends
_AMOUNT_DIGITS = 25  # decimal(40, 15) keeps 25 digits before the point
# Ruby's BigDecimal(string), as `BigDecimal(params[:timestamp].to_s)` calls it.
_BIGDECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
# The usual timestamps, "1793491201.586" or 1793491201, cast without Decimal; none of them
# is past the 10**16 seconds cast_timestamp refuses.
_PLAIN_SECONDS = re.compile(r"([0-9]{1,15})(?:\.([0-9]*))?")
_PLAIN_LIMIT = 10**16
_NON_FINITE = re.compile(r"\s*([+-]?Infinity|NaN)\s*|-?inf")  # -?inf: a float's repr
# Ruby's String#to_d: the longest numeric prefix, else 0.
_LOOSE_DECIMAL = re.compile(r"\s*[+-]?(\d(_?\d)*)?(\.\d(_?\d)*)?([eE][+-]?\d+)?")
_TIME = (
    r"(?:{t}(?P<H>\d{{2}}){c}(?P<M>\d{{2}})(?:{c}(?P<S>\d{{2}})(?:[,.](?P<f>\d+))?)?"
    r"(?P<z>z|[-+]\d{{2}}(?:{zc}\d{{2}})?)?)?"
)
# Ruby's DateTime.iso8601, extended and basic forms: calendar, ordinal and week dates.
_ISO8601 = [
    re.compile(
        rf"\s*(?:(?P<y>[-+]?\d{{4}}){dash}(?P<m>\d{{2}}){dash}(?P<d>\d{{2}})"
        rf"|(?P<oy>[-+]?\d{{4}}){dash}(?P<od>\d{{3}})"
        rf"|(?P<wy>\d{{4}}){dash}w(?P<w>\d{{2}}){dash}(?P<wd>\d))" + time_part + r"\s*",
        re.IGNORECASE,
    )
    for dash, time_part in (
        ("-", _TIME.format(t="t", c=":", zc=":?")),
        ("", _TIME.format(t="t?", c="", zc="")),
    )
]


class InvalidTimestamp(Exception):
    """BigDecimal() raised ArgumentError: Lago answers `invalid_format`."""


class Unrescued(Exception):
    """An error Lago does not rescue (FloatDomainError, a database range error): a 500."""


def random_uuid() -> str:
    """Postgres' gen_random_uuid() as text: what str(uuid.uuid4()) gives, in a third the time."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def cast_string(value: str | float | bool | None) -> str | None:
    """ActiveModel's string cast (floats print as Python does, not as Ruby's Float#to_s)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    return None if value is None else str(value)


def cast_timestamp(value: str | float | bool | None, received_us: int) -> int:
    """`Time.zone.at(value ? BigDecimal(value.to_s) : now)`, truncated to microseconds."""
    if value is None or value is False:
        return received_us
    if type(value) is int and -_PLAIN_LIMIT < value < _PLAIN_LIMIT:
        return value * US
    plain = _PLAIN_SECONDS.fullmatch(value) if type(value) is str else None
    if plain:  # what BigDecimal, then flooring to microseconds, gives: without them
        return int(plain[1]) * US + int((plain[2] or "")[:6].ljust(6, "0"))
    text = repr(value) if isinstance(value, float) else str(value)
    if _NON_FINITE.fullmatch(text):  # FloatDomainError in Time.at
        raise Unrescued
    if value is True or not _BIGDECIMAL.fullmatch(text):
        raise InvalidTimestamp
    seconds = Decimal(text.strip())
    if seconds.adjusted() > 15:  # far outside Postgres' range; spares Python a giant integer
        raise Unrescued
    return int(_WIDE.multiply(seconds, US).to_integral_value(rounding=ROUND_FLOOR))


def cast_amount(value: str | float | bool | None) -> Decimal | None:
    """ActiveModel's decimal(40, 15) cast: loose strings, floats to 16 digits, rounded to 15."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | int):
        number = Decimal(int(value))
    elif isinstance(value, float):
        number = Context(prec=16, rounding=ROUND_HALF_UP).create_decimal(value)
    else:
        prefix = _LOOSE_DECIMAL.match(value)
        digits = prefix.group().replace("_", "").strip() if prefix else ""
        mantissa = prefix.group(1) or prefix.group(3) if prefix else None
        number = Decimal(digits) if mantissa else Decimal(0)
    if not fits_amount(number):
        return number
    return number.quantize(Decimal("1e-15"), context=_AMOUNT)


def fits_amount(number: Decimal) -> bool:
    """Whether Postgres' numeric(40, 15) takes it."""
    return number.is_finite() and number.adjusted() < _AMOUNT_DIGITS


def micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is read as UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    since = aware - _EPOCH
    return (since.days * 86_400 + since.seconds) * US + since.microseconds


def iso8601(micros: int, *, milliseconds: bool = False) -> str:
    """Ruby's `iso8601(3)` (or `iso8601`) in UTC, truncating; years past 9999 included."""
    seconds, fraction = divmod(micros, US)
    if milliseconds:
        return f"{_date_and_clock(seconds)}.{fraction // 1000:03d}Z"
    return f"{_date_and_clock(seconds)}Z"


@functools.lru_cache(maxsize=1 << 17)  # a day and a half of distinct seconds
def _date_and_clock(unix_seconds: int) -> str:
    days, seconds = divmod(unix_seconds, 86_400)
    year, month, day = _civil_from_days(days)
    year_text = f"{year:04d}" if year >= 0 else f"{year:05d}"
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{year_text}-{month:02d}-{day:02d}T{clock}"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm)."""
    era, day_of_era = divmod(days + 719_468, 146_097)
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def parse_iso8601(text: str) -> int | None:
    """Ruby's `DateTime.iso8601`, in microseconds, for the usual forms; None where it raises.

    Not covered (rejected here, accepted by Ruby): two-digit, signed and 5-digit years,
    truncated dates (`--01-31`) and times without a date.
    """
    matches = (pattern.fullmatch(text) for pattern in _ISO8601)
    match = next(filter(None, matches), None) if len(text) <= 128 else None
    if match is None:  # Ruby also raises past 128 characters
        return None
    parts = match.groupdict()
    try:
        if parts["y"]:
            day = date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
        elif parts["oy"]:
            day = date(int(parts["oy"]), 1, 1) + timedelta(days=int(parts["od"]) - 1)
            if day.year != int(parts["oy"]):
                return None
        else:
            day = date.fromisocalendar(int(parts["wy"]), int(parts["w"]), int(parts["wd"]))
        hour, minute, second = (int(parts[name] or 0) for name in ("H", "M", "S"))
        moment = datetime.combine(day, time(hour, minute, second), tzinfo=UTC)
    except (ValueError, OverflowError):
        return None
    fraction = int((parts["f"] or "")[:6].ljust(6, "0"))  # Rails binds microseconds
    zone = (parts["z"] or "z").replace(":", "").lower()
    offset = 0 if zone == "z" else int(zone[:3]) * 3600 + int(zone[0] + (zone[3:] or "0")) * 60
    return micros(moment) + fraction - offset * US


def ruby_to_i(text: str) -> int:
    """Ruby's String#to_i: the leading integer, else 0."""
    match = re.match(r"\s*([+-]?\d+(?:_\d+)*)", text)
    return int(match.group(1).replace("_", "")) if match else 0


def decimal_text(value: Decimal) -> str:
    """BigDecimal#to_s as ActiveSupport formats it: plain digits, at least one decimal."""
    text = f"{value.normalize(_AMOUNT):f}"
    return text if "." in text else f"{text}.0"


def jsonb(value: Any) -> Any:
    """A JSON value after a jsonb round trip: object keys ordered by length, then bytes."""
    if isinstance(value, dict):
        order = _jsonb_order(tuple(value))
        return {
            key: jsonb(value[key]) if type(value[key]) not in _LEAVES else value[key]
            for key in order
        }
    if isinstance(value, list):
        return [item if type(item) in _LEAVES else jsonb(item) for item in value]
    return value


@functools.lru_cache(maxsize=1 << 12)  # events of one source share their property names
def _jsonb_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=lambda key: (len(key.encode()), key.encode())))


def deep_munge(value: Any) -> Any:
    """Rails' deep_munge on JSON parameters: nulls dropped from arrays, at any depth."""
    if isinstance(value, dict):
        return {
            key: item if type(item) in _LEAVES else deep_munge(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            item if type(item) in _LEAVES else deep_munge(item)
            for item in value
            if item is not None
        ]
    return value


def map_string(value: Any) -> str:
    """A property in ClickHouse's Map(String, String): strings as is, other values as JSON."""
    if isinstance(value, str):
        return value
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)  # what json.dumps writes, without its machinery
    return "" if value is None else json.dumps(value, separators=(",", ":"))


def kaminari_limit(raw: str | None, cap: int | None) -> int:
    """Kaminari's `per(params[:per_page] || 100)`, with an optional max_per_page."""
    if raw is None:
        limit = PER_PAGE
    elif ruby_to_i(raw) < 0 or not re.match(r"\d", raw):
        limit = KAMINARI_PER_PAGE  # `per` ignores it; `page` already set Kaminari's default
    else:
        limit = ruby_to_i(raw)
    return min(limit, cap) if cap and limit else limit


def pagination_meta(page: int, limit: int, total: int) -> dict[str, int | None]:
    """Pagination#pagination_metadata: zeros and nulls when nothing matches."""
    if not total:
        return {
            "current_page": 0,
            "next_page": None,
            "prev_page": None,
            "total_pages": 0,
            "total_count": 0,
        }
    pages = -(-total // limit)
    return {
        "current_page": page,
        "next_page": page + 1 if page < pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": pages,
        "total_count": total,
    }


def rails_json(body: Mapping[str, Any]) -> bytes:
    """JSON as ActiveSupport encodes it: compact, UTF-8, HTML-safe escapes."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
