"""One Lago event: how `Event.new` casts it, how `save!` validates it, how it is serialized."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from reconcile.lago_emulator.values import (
    US,
    cast_amount,
    cast_string,
    cast_timestamp,
    decimal_text,
    fits_amount,
    iso8601,
    jsonb,
    map_string,
)

# Postgres `timestamp` spans 4714-11-24 BC .. 294276 AD; outside it the INSERT fails: a 500.
_PG_FIRST_US = -210_866_803_200 * US
_PG_END_US = 9_224_318_016_000 * US
_SCALARS = (str, int, float, bool, type(None))  # what `permit` keeps


class Event(NamedTuple):
    """One event as `Event.new` holds it once Rails has cast each permitted parameter."""

    transaction_id: str | None
    code: str | None
    external_subscription_id: str | None
    timestamp_us: int
    precise_total_amount_cents: Decimal | None
    properties: dict[str, Any]
    received_us: int
    lago_id: str | None = None

    def saved(self, lago_id: str) -> Event:
        """The event once saved under `lago_id`."""
        return Event(*self[:-1], lago_id)  # faster than `_replace`


def build(params: Mapping[str, Any], received_us: int) -> Event:
    """`Event.new` filled from permitted params: scalars only, arrays and objects dropped."""

    def scalar(name: str) -> str | float | bool | None:
        value = params.get(name)
        return value if isinstance(value, _SCALARS) else None

    properties = params.get("properties")
    return Event(
        transaction_id=cast_string(scalar("transaction_id")),
        code=cast_string(scalar("code")),
        external_subscription_id=cast_string(scalar("external_subscription_id")),
        timestamp_us=cast_timestamp(scalar("timestamp"), received_us),
        precise_total_amount_cents=cast_amount(scalar("precise_total_amount_cents")),
        properties=properties if isinstance(properties, dict) else {},
        received_us=received_us,
    )


def fits_postgres(event: Event) -> bool:
    """False where the INSERT fails (timestamp or numeric(40, 15) out of range): a 500."""
    amount = event.precise_total_amount_cents
    amount_fits = amount is None or fits_amount(amount)
    return _PG_FIRST_US <= event.timestamp_us < _PG_END_US and amount_fits


def missing_fields(event: Event) -> dict[str, list[str]]:
    """`validates :transaction_id, :code, presence: true`, with Lago's message."""
    return {
        field: ["value_is_mandatory"]
        for field in ("transaction_id", "code")
        if not (getattr(event, field) or "").strip()
    }


def created(event: Event) -> dict[str, Any]:
    """EventSerializer on the event a POST built (ClickHouse: unsaved, so no id nor date)."""
    amount = event.precise_total_amount_cents
    return {
        "lago_id": event.lago_id,
        "transaction_id": event.transaction_id,
        "lago_customer_id": None,  # never set on creation; no subscription exists here
        "code": event.code,
        "timestamp": iso8601(event.timestamp_us, milliseconds=True),
        "precise_total_amount_cents": None if amount is None else decimal_text(amount),
        "properties": event.properties,
        "lago_subscription_id": None,
        "external_subscription_id": event.external_subscription_id,
        "created_at": None if event.lago_id is None else iso8601(event.received_us),
    }


def stored_postgres(event: Event) -> dict[str, Any]:
    """EventSerializer on the saved row: properties went through a jsonb round trip."""
    shown = created(event)
    shown["properties"] = jsonb(event.properties)
    return shown


def stored_clickhouse(event: Event, organization_id: str) -> dict[str, Any]:
    """EventSerializer on ClickHouse's events_raw row: NULLs as defaults, a Map of strings."""
    ingested_us = event.received_us // 1000 * 1000  # DateTime(3)
    subscription, transaction_id = (
        event.external_subscription_id or "",
        event.transaction_id or "",
    )
    row_id = f"{subscription}-{transaction_id}-{ingested_us // US}"  # Clickhouse::EventsRaw#id
    return {
        "lago_id": f"{organization_id}-{row_id}",
        "transaction_id": transaction_id,
        "lago_customer_id": None,
        "code": event.code or "",
        "timestamp": iso8601(event.timestamp_us, milliseconds=True),
        "precise_total_amount_cents": decimal_text(event.precise_total_amount_cents or Decimal(0)),
        "properties": {key: map_string(value) for key, value in event.properties.items()},
        "lago_subscription_id": None,
        "external_subscription_id": subscription,
        "created_at": iso8601(ingested_us),
    }
