"""Events as Lago returns them, typed: what the matcher compares with the spend logs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from reconcile.errors import LagoError


@dataclasses.dataclass(frozen=True)
class LagoEvent:
    """One stored event (GET /api/v1/events); times are aware UTC, to the millisecond."""

    transaction_id: str
    external_subscription_id: str | None
    code: str
    timestamp: dt.datetime
    properties: Mapping[str, Any]
    lago_id: str | None = None
    created_at: dt.datetime | None = None

    @property
    def identity(self) -> tuple[str, str | None, str | None]:
        """What tells two listed events apart (ClickHouse may list copies of one id)."""
        return (self.transaction_id, self.external_subscription_id, self.lago_id)


def parse_event(data: Mapping[str, Any]) -> LagoEvent:
    """An event object of Lago's API, or a LagoError naming what is wrong with it."""
    try:
        return LagoEvent(
            transaction_id=str(data["transaction_id"]),
            external_subscription_id=data.get("external_subscription_id"),
            code=str(data["code"]),
            timestamp=parse_time(data["timestamp"]),
            properties=data.get("properties") or {},
            lago_id=data.get("lago_id"),
            created_at=parse_time(data["created_at"]) if data.get("created_at") else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise LagoError(
            f"Lago returned an event reconcile cannot read ({error!r}): {data!r:.300}"
        ) from None


def parse_time(text: str) -> dt.datetime:
    """Lago's "2026-11-01T00:00:00.123Z" (or without milliseconds) as an aware datetime."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed.astimezone(dt.UTC)
