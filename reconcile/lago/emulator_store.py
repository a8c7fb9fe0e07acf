"""Lago's events API (lago-api v1.51.0) as a pure in-memory store: what each request does to it.

Copied from app/services/events/create_service.rb and create_batch_service.rb,
app/queries/events_query.rb and app/serializers/v1/event_serializer.rb. Two stores, as an
organization's `events_store` setting picks:
- POSTGRES (the default): unique index (organization, external_subscription_id,
  transaction_id); Postgres NULLs are distinct, so events without a subscription never clash.
- CLICKHOUSE ("high usage"): a POST produces to Kafka without saving (a single event is not
  even validated); the MergeTree table keeps every copy, is listed by reception time and holds
  properties as Map(String, String).
There are no customers, subscriptions or billable metrics here: `lago_customer_id` and
`lago_subscription_id` are always null, and no metric expression is evaluated.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from reconcile.lago.emulator_values import (
    US,
    InvalidTimestamp,
    Unrescued,
    cast_amount,
    cast_string,
    cast_timestamp,
    decimal_text,
    fits_amount,
    iso8601,
    jsonb,
    kaminari_limit,
    map_string,
    micros,
    pagination_meta,
    parse_iso8601,
    ruby_to_i,
)

MAX_BATCH = 100  # CreateBatchService::MAX_LENGTH
# Postgres `timestamp` spans 4714-11-24 BC .. 294276 AD; outside it the INSERT fails: a 500.
_PG_FIRST_US = -210_866_803_200 * US
_PG_END_US = 9_224_318_016_000 * US


class Store(enum.StrEnum):
    """Where an organization's events live."""

    POSTGRES = "postgres"
    CLICKHOUSE = "clickhouse"


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP status and the JSON body Lago answers with."""

    status: int
    body: dict[str, Any]


INTERNAL_ERROR = Reply(500, {"status": 500, "error": "Internal Server Error"})


def validation_errors(details: Mapping[str, Any]) -> Reply:
    """ApiErrors#validation_errors."""
    body = {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors"}
    return Reply(422, {**body, "error_details": dict(details)})


def not_found(resource: str) -> Reply:
    """ApiResponses#not_found_error."""
    return Reply(404, {"status": 404, "error": "Not Found", "code": f"{resource}_not_found"})


@dataclasses.dataclass(frozen=True)
class Event:
    """One event as `Event.new` holds it once Rails has cast each permitted parameter."""

    transaction_id: str | None
    code: str | None
    external_subscription_id: str | None
    timestamp_us: int
    precise_total_amount_cents: Decimal | None
    properties: dict[str, Any]
    received_us: int
    lago_id: str | None = None


class EventStore:
    """The events of one organization, and the answer Lago gives to each events request."""

    def __init__(
        self,
        store: Store = Store.POSTGRES,
        *,
        legacy_partial_batches: bool = False,
        organization_id: str | None = None,
    ) -> None:
        self.store = Store(store)
        self.legacy_partial_batches = legacy_partial_batches
        self.organization_id = organization_id or str(uuid.uuid4())
        self._events: list[Event] = []
        self._unique_keys: set[tuple[str | None, str | None]] = set()

    def create(self, params: Mapping[str, Any], received: datetime) -> Reply:
        """POST /events with `{"event": params}`."""
        try:
            event = _build(params, micros(received))
        except InvalidTimestamp:
            return validation_errors({"timestamp": ["invalid_format"]})
        except Unrescued:
            return INTERNAL_ERROR
        if self.store is Store.CLICKHOUSE:  # `save!` is skipped: nothing is validated
            self._events.append(event)
            return Reply(200, {"event": self._created(event)})
        refusal = self._refusal(event)
        return refusal or Reply(200, {"event": self._created(self._insert(event))})

    def create_batch(self, items: Sequence[Mapping[str, Any]] | None, received: datetime) -> Reply:
        """POST /events/batch; `items` are the objects of `events` (None: no such array)."""
        if not items:
            return validation_errors({"events": ["no_events"]})
        if len(items) > MAX_BATCH:
            return validation_errors({"events": ["too_many_events"]})
        events: list[Event] = []
        errors: dict[str, Any] = {}
        try:
            for index, params in enumerate(items):
                try:
                    event = _build(params, micros(received))
                except InvalidTimestamp:
                    errors[str(index)] = {"timestamp": ["invalid_format"]}
                    continue
                events.append(event)
                if missing := _missing(event):
                    errors[str(index)] = missing
        except Unrescued:
            return INTERNAL_ERROR
        if not errors and self.store is Store.POSTGRES:
            if not all(map(_fits_postgres, events)):
                return INTERNAL_ERROR
            insert = self._save_each if self.legacy_partial_batches else self._insert_all
            events, errors = insert(events)
        if errors:
            return validation_errors(errors)
        if self.store is Store.CLICKHOUSE:
            self._events.extend(events)
        return Reply(200, {"events": [self._created(event) for event in events]})

    def find(self, transaction_id: str) -> Reply:
        """GET /events/{transaction_id}: the first stored (Lago's find_by has no order)."""
        for event in self._events:
            shown = self._stored(event)
            if shown["transaction_id"] == transaction_id:
                return Reply(200, {"event": shown})
        return not_found("event")

    def list_events(self, query: Mapping[str, str], *, per_page_cap: int | None = None) -> Reply:
        """GET /events with its query parameters (EventsQuery and Pagination)."""
        bounds: dict[str, int] = {}
        for name in ("timestamp_from", "timestamp_to"):
            if name in query:
                parsed = parse_iso8601(query[name])
                if parsed is None:
                    return validation_errors({name: ["invalid_date"]})
                bounds[name] = parsed
        rows = []
        for event in self._events:
            shown = self._stored(event)
            stored_us = event.timestamp_us
            if self.store is Store.CLICKHOUSE:  # DateTime64(3), listed by ingested_at
                stored_us, sort_us = stored_us // 1000 * 1000, event.received_us // 1000
            else:
                sort_us = stored_us
            if (
                query.get("code", shown["code"]) == shown["code"]
                and query.get("external_subscription_id", shown["external_subscription_id"])
                == shown["external_subscription_id"]
                and bounds.get("timestamp_from", stored_us)
                <= stored_us
                <= bounds.get("timestamp_to", stored_us)
            ):
                rows.append((sort_us, shown["transaction_id"] or "", shown))
        rows.sort(key=lambda row: row[1])  # stable sorts: time desc, then transaction_id asc
        rows.sort(key=lambda row: row[0], reverse=True)
        page = max(ruby_to_i(query.get("page", "1")), 1)
        limit = kaminari_limit(query.get("per_page"), per_page_cap)
        if limit == 0 and rows:  # Kaminari::ZeroPerPageOperation, not rescued
            return INTERNAL_ERROR
        offset = (page - 1) * limit
        page_rows = [shown for _, _, shown in rows[offset : offset + limit]]
        return Reply(200, {"events": page_rows, "meta": pagination_meta(page, limit, len(rows))})

    def stored_events(self) -> list[dict[str, Any]]:
        """Every stored event as GET /events shows it, in the order Lago received them."""
        return [self._stored(event) for event in self._events]

    def _refusal(self, event: Event) -> Reply | None:
        """How `save!` fails on Postgres, as Lago answers it; None when it succeeds."""
        if missing := _missing(event):
            return validation_errors(missing)
        if not _fits_postgres(event):
            return INTERNAL_ERROR
        if self._clashes(event):  # ActiveRecord::RecordNotUnique
            return validation_errors({"transaction_id": ["value_already_exist"]})
        return None

    def _clashes(self, event: Event) -> bool:
        key = (event.external_subscription_id, event.transaction_id)
        return event.external_subscription_id is not None and key in self._unique_keys

    def _insert(self, event: Event) -> Event:
        saved = dataclasses.replace(event, lago_id=str(uuid.uuid4()))
        self._events.append(saved)
        if saved.external_subscription_id is not None:
            self._unique_keys.add((saved.external_subscription_id, saved.transaction_id))
        return saved

    def _insert_all(self, events: list[Event]) -> tuple[list[Event], dict[str, Any]]:
        """Since v1.39: one `insert_all ... ON CONFLICT DO NOTHING`, rolled back on any duplicate.

        Lago matches the rows it got back to the items by transaction_id alone, so two items
        with one transaction_id fail even for different subscriptions, or for none.
        """
        keys = set(self._unique_keys)
        returned: set[str | None] = set()  # `index_by(&:transaction_id)` of the rows inserted
        for event in events:
            key = (event.external_subscription_id, event.transaction_id)
            if event.external_subscription_id is None or key not in keys:  # else DO NOTHING
                keys.add(key)
                returned.add(event.transaction_id)
        errors: dict[str, Any] = {}
        for index, event in enumerate(events):
            if event.transaction_id in returned:
                returned.remove(event.transaction_id)
            else:
                errors[str(index)] = {"transaction_id": ["value_already_exist"]}
        return ([], errors) if errors else ([self._insert(event) for event in events], {})

    def _save_each(self, events: list[Event]) -> tuple[list[Event], dict[str, Any]]:
        """Before v1.39: `save!` item by item; the rollback missed them, so good items stayed."""
        saved: list[Event] = []
        errors: dict[str, Any] = {}
        for index, event in enumerate(events):
            if self._clashes(event):
                errors[str(index)] = {"transaction_id": ["value_already_exist"]}
            else:
                saved.append(self._insert(event))
        return saved, errors

    def _created(self, event: Event) -> dict[str, Any]:
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

    def _stored(self, event: Event) -> dict[str, Any]:
        """EventSerializer on the stored row: a jsonb round trip, or ClickHouse's events_raw."""
        if self.store is Store.POSTGRES:
            return {**self._created(event), "properties": jsonb(event.properties)}
        ingested_us = event.received_us // 1000 * 1000  # DateTime(3)
        subscription, transaction_id = (
            event.external_subscription_id or "",
            event.transaction_id or "",
        )
        row_id = f"{subscription}-{transaction_id}-{ingested_us // US}"  # Clickhouse::EventsRaw#id
        return {
            "lago_id": f"{self.organization_id}-{row_id}",
            "transaction_id": transaction_id,
            "lago_customer_id": None,
            "code": event.code or "",
            "timestamp": iso8601(event.timestamp_us, milliseconds=True),
            "precise_total_amount_cents": decimal_text(
                event.precise_total_amount_cents or Decimal(0)
            ),
            "properties": {key: map_string(value) for key, value in event.properties.items()},
            "lago_subscription_id": None,
            "external_subscription_id": subscription,
            "created_at": iso8601(ingested_us),
        }


def _build(params: Mapping[str, Any], received_us: int) -> Event:
    """`Event.new` filled from permitted params: scalars only, arrays and objects dropped."""
    scalar = {
        key: value
        for key, value in params.items()
        if isinstance(value, str | int | float | bool | None)
    }
    properties = params.get("properties")
    return Event(
        transaction_id=cast_string(scalar.get("transaction_id")),
        code=cast_string(scalar.get("code")),
        external_subscription_id=cast_string(scalar.get("external_subscription_id")),
        timestamp_us=cast_timestamp(scalar.get("timestamp"), received_us),
        precise_total_amount_cents=cast_amount(scalar.get("precise_total_amount_cents")),
        properties=properties if isinstance(properties, dict) else {},
        received_us=received_us,
    )


def _fits_postgres(event: Event) -> bool:
    """False where the INSERT fails (timestamp or numeric(40, 15) out of range): a 500."""
    amount = event.precise_total_amount_cents
    amount_fits = amount is None or fits_amount(amount)
    return _PG_FIRST_US <= event.timestamp_us < _PG_END_US and amount_fits


def _missing(event: Event) -> dict[str, list[str]]:
    """`validates :transaction_id, :code, presence: true`, with Lago's message."""
    return {
        field: ["value_is_mandatory"]
        for field in ("transaction_id", "code")
        if not (getattr(event, field) or "").strip()
    }
