"""Settings: those shared with LiteLLM's Lago integration, and what one reconciliation covers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import unicodedata
from decimal import Decimal

from reconcile.errors import ConfigError
from reconcile.margins import DEFAULT_SETTLE, Margins
from reconcile.window import Window

#: The span of time the pass reads, lists, matches and commits at a time.
DEFAULT_SLICE = dt.timedelta(hours=1)
DEFAULT_LEASE = dt.timedelta(seconds=60)
#: Rows per chunk read from Postgres: memory stays flat whatever the window's size.
DEFAULT_CHUNK_ROWS = 20_000


class ChargeBy(enum.StrEnum):
    """Which spend-log id a Lago subscription is keyed on (LiteLLM's `LAGO_API_CHARGE_BY`)."""

    END_USER_ID = "end_user_id"
    USER_ID = "user_id"
    TEAM_ID = "team_id"

    @property
    def column(self) -> str:
        """The `"LiteLLM_SpendLogs"` column holding this id."""
        return _COLUMNS[self]


_COLUMNS = {
    ChargeBy.END_USER_ID: "end_user",
    ChargeBy.USER_ID: "user",
    ChargeBy.TEAM_ID: "team_id",
}

DEFAULT_CHARGE_BY = ChargeBy.END_USER_ID

#: The token counts a spend-log row holds and LiteLLM's Lago callback sends, by the same names.
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def parse_charge_by(value: str, *, source: str = "LAGO_API_CHARGE_BY") -> ChargeBy:
    """Read a charge-by mode the way LiteLLM spells it; `source` names the setting in errors."""
    try:
        return ChargeBy(value.strip())
    except ValueError:
        modes = ", ".join(mode.value for mode in ChargeBy)
        raise ConfigError(
            f"{source}={value!r} is not a charge-by mode: use one of {modes} "
            "(the same value as LiteLLM's LAGO_API_CHARGE_BY)"
        ) from None


def parse_event_code(value: str | None, *, source: str = "LAGO_API_EVENT_CODE") -> str:
    """Check a Lago billable-metric code: non-empty, no surrounding blanks, no control chars.

    Control characters are refused because the code is part of every transaction id's input,
    where they would make two different codes able to produce the same id.
    """
    if value is None or not value.strip():
        raise ConfigError(
            f"{source} is not set: give the code of the Lago billable metric LiteLLM bills "
            "(the same value as LiteLLM's LAGO_API_EVENT_CODE), e.g. --event-code openai_tokens"
        )
    if value != value.strip():
        raise ConfigError(f"{source}={value!r} has leading or trailing blanks: remove them")
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise ConfigError(f"{source}={value!r} contains control characters: remove them")
    return value


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """One reconciliation: what to reconcile, and how event times may stray (see README).

    `settle`: rows whose events could still arrive (endTime + max_delay after now - settle) are
    held back, and Lago is never listed past now - settle.
    """

    mode: str  # "run", "backfill" or "report"
    window: Window
    charge_by: ChargeBy
    code: str
    margins: Margins = dataclasses.field(default_factory=Margins)
    settle: dt.timedelta = DEFAULT_SETTLE
    customers: frozenset[str] = frozenset()
    dry_run: bool = False
    max_events: int | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    slice: dt.timedelta = DEFAULT_SLICE
    restart: bool = False
    """Start over, even when the latest run over the same window was cut short (no resume)."""
    part: dt.timedelta | None = None
    """Cut the window into parts this long (on the slice grid), each leased to one worker at
    a time; None: the window is one part."""
    lease: dt.timedelta = DEFAULT_LEASE
    """How long a worker's claim on a part holds without a heartbeat (it renews it at a
    third of this)."""
    join: int | None = None
    """Only join this run, under way (`--workers`' own processes): never start or resume one."""
    tolerance: Decimal = Decimal("0.01")
