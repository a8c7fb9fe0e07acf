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
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reconcile.lago_emulator.event import (
    Event,
    build,
    created,
    fits_postgres,
    missing_fields,
    stored_clickhouse,
    stored_postgres,
)
from reconcile.lago_emulator.index import EventIndex
from reconcile.lago_emulator.values import (
    InvalidTimestamp,
    Unrescued,
    deep_munge,
    kaminari_limit,
    micros,
    pagination_meta,
    parse_iso8601,
    rails_json,
    random_uuid,
    ruby_to_i,
)

MAX_BATCH = 100  # CreateBatchService::MAX_LENGTH


class Store(enum.StrEnum):
    """Where an organization's events live."""

    POSTGRES = "postgres"
    CLICKHOUSE = "clickhouse"


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP status and the JSON body Lago answers with (`raw`: already encoded)."""

    status: int
    body: dict[str, Any] = dataclasses.field(default_factory=dict)
    raw: bytes | None = None

    def json(self) -> dict[str, Any]:
        """The body, decoded if it came encoded."""
        if self.raw is None:
            return self.body
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded

    def content(self) -> bytes:
        """The body as sent on the wire."""
        return self.raw if self.raw is not None else rails_json(self.body)


INTERNAL_ERROR = Reply(500, {"status": 500, "error": "Internal Server Error"})


def validation_errors(details: Mapping[str, Any]) -> Reply:
    """ApiErrors#validation_errors."""
    body = {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors"}
    return Reply(422, {**body, "error_details": dict(details)})


def not_found(resource: str) -> Reply:
    """ApiResponses#not_found_error."""
    return Reply(404, {"status": 404, "error": "Not Found", "code": f"{resource}_not_found"})


def event_param_refusal(value: Any) -> Reply | None:
    """`params.require(:event).permit(...)`: 400 when blank, 500 unless an object, else None."""
    if isinstance(value, Mapping) and value:
        return None
    if value is None or value in ([], {}) or (isinstance(value, str) and not value.strip()):
        message = "param is missing or the value is empty or invalid: event"
        return Reply(400, {"status": 400, "error": f"BadRequest: {message}"})
    return INTERNAL_ERROR


class EventStore:
    """The events of one organization, and the answer Lago gives to each events request.

    Bodies hold dicts the store caches (stored events never change): read them, never edit.
    """

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
        self._shown: list[dict[str, Any] | None] = []  # each one's `_stored`, once asked for
        self._encoded: list[bytes | None] = []  # ...and its JSON, once listed over HTTP
        self._unique_keys: set[tuple[str | None, str | None]] = set()
        self._index = EventIndex(listed_by_filtered_time=self.store is Store.POSTGRES)

    def create(self, params: Mapping[str, Any], received: datetime) -> Reply:
        """POST /events with `{"event": params}`."""
        outcome = self._accept(params, micros(received))
        return outcome if isinstance(outcome, Reply) else Reply(200, {"event": created(outcome)})

    def preload(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        received: Callable[[Mapping[str, Any]], datetime] | datetime | None = None,
    ) -> int:
        """Store `events` as one POST /events each would, without HTTP: how many were stored.

        `received` is each one's reception time (the timestamp of those sent without one):
        a function called once per event, in order, or one time for all; None: now. The
        first event Lago refuses raises a ValueError naming it and Lago's answer; the events
        before it stay stored, as they would have been.
        """
        fixed_us = micros(received if isinstance(received, datetime) else datetime.now(UTC))
        stored = 0
        for index, params in enumerate(events):
            received_us = micros(received(params)) if callable(received) else fixed_us
            event = deep_munge(params)
            outcome = event_param_refusal(event) or self._accept(event, received_us)
            if isinstance(outcome, Event):
                stored += 1
                continue
            name = params.get("transaction_id") if isinstance(params, Mapping) else None
            raise ValueError(
                f"event {index} (transaction_id {name!r}) refused: Lago answers "
                f"{outcome.status} {outcome.body}"
            )
        return stored

    def _accept(self, params: Mapping[str, Any], received_us: int) -> Event | Reply:
        """What POST /events does with its event: the event kept, or Lago's refusal."""
        try:
            event = build(params, received_us)
        except InvalidTimestamp:
            return validation_errors({"timestamp": ["invalid_format"]})
        except Unrescued:
            return INTERNAL_ERROR
        if self.store is Store.CLICKHOUSE:  # `save!` is skipped: nothing is validated
            return self._append(event)
        return self._refusal(event) or self._insert(event)

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
                    event = build(params, micros(received))
                except InvalidTimestamp:
                    errors[str(index)] = {"timestamp": ["invalid_format"]}
                    continue
                events.append(event)
                if absent := missing_fields(event):
                    errors[str(index)] = absent
        except Unrescued:
            return INTERNAL_ERROR
        if not errors and self.store is Store.POSTGRES:
            if not all(map(fits_postgres, events)):
                return INTERNAL_ERROR
            insert = self._save_each if self.legacy_partial_batches else self._insert_all
            events, errors = insert(events)
        if errors:
            return validation_errors(errors)
        if self.store is Store.CLICKHOUSE:
            events = [self._append(event) for event in events]
        return Reply(200, {"events": [created(event) for event in events]})

    def find(self, transaction_id: str) -> Reply:
        """GET /events/{transaction_id}: the first stored (Lago's find_by has no order)."""
        for row, event in enumerate(self._events):
            if (event.transaction_id or "") == transaction_id:  # ClickHouse shows None as ""
                return Reply(200, {"event": self._shown_at(row)})
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
        rows, start, stop = self._index.rows(
            query.get("code"),
            query.get("external_subscription_id"),
            bounds.get("timestamp_from"),
            bounds.get("timestamp_to"),
        )
        page = max(ruby_to_i(query.get("page", "1")), 1)
        limit = kaminari_limit(query.get("per_page"), per_page_cap)
        if limit == 0 and stop > start:  # Kaminari::ZeroPerPageOperation, not rescued
            return INTERNAL_ERROR
        first = start + (page - 1) * limit
        shown = b",".join(self._encoded_at(row) for row in rows[first : min(first + limit, stop)])
        meta = rails_json(pagination_meta(page, limit, stop - start))
        return Reply(200, raw=b'{"events":[' + shown + b'],"meta":' + meta + b"}")

    def warm(self) -> None:
        """Encode every event and build the listing index now, as a long-running Lago has."""
        for row in range(len(self._events)):
            self._encoded_at(row)
        self.list_events({"per_page": "1"})

    def stored_events(self) -> list[dict[str, Any]]:
        """Every stored event as GET /events shows it, in the order Lago received them."""
        return [self._shown_at(row) for row in range(len(self._events))]

    def _refusal(self, event: Event) -> Reply | None:
        """How `save!` fails on Postgres, as Lago answers it; None when it succeeds."""
        if absent := missing_fields(event):
            return validation_errors(absent)
        if not fits_postgres(event):
            return INTERNAL_ERROR
        if self._clashes(event):  # ActiveRecord::RecordNotUnique
            return validation_errors({"transaction_id": ["value_already_exist"]})
        return None

    def _clashes(self, event: Event) -> bool:
        key = (event.external_subscription_id, event.transaction_id)
        return event.external_subscription_id is not None and key in self._unique_keys

    def _insert(self, event: Event) -> Event:
        saved = self._append(event.saved(random_uuid()))
        if saved.external_subscription_id is not None:
            self._unique_keys.add((saved.external_subscription_id, saved.transaction_id))
        return saved

    def _append(self, event: Event) -> Event:
        """Keep `event`, and what listings filter and sort it by, as the store shows it."""
        self._events.append(event)
        self._shown.append(None)
        self._encoded.append(None)
        transaction_id = event.transaction_id or ""
        if self.store is Store.POSTGRES:
            code, subscription = event.code or "", event.external_subscription_id
            filtered = listed = event.timestamp_us
        else:  # events_raw: DateTime64(3), listed by ingested_at
            code, subscription = event.code or "", event.external_subscription_id or ""
            filtered, listed = event.timestamp_us // 1000 * 1000, event.received_us // 1000
        self._index.add(code, subscription, filtered, listed, transaction_id)
        return event

    def _encoded_at(self, row: int) -> bytes:
        """The stored event number `row` as GET /events sends it, encoded once (pages reuse it)."""
        encoded = self._encoded[row]
        if encoded is None:
            shown = self._shown[row] or self._stored(self._events[row])
            encoded = self._encoded[row] = rails_json(shown)
        return encoded

    def _shown_at(self, row: int) -> dict[str, Any]:
        """The stored event number `row` as GET /events shows it, serialized once."""
        shown = self._shown[row]
        if shown is None:
            shown = self._shown[row] = self._stored(self._events[row])
        return shown

    def _insert_all(self, events: list[Event]) -> tuple[list[Event], dict[str, Any]]:
        """Since v1.39: one `insert_all ... ON CONFLICT DO NOTHING`, rolled back on any duplicate.

        Lago matches the rows it got back to the items by transaction_id alone, so two items
        with one transaction_id fail even for different subscriptions, or for none.
        """
        batch_keys: set[tuple[str | None, str | None]] = set()  # this batch's, on top of stored
        returned: set[str | None] = set()  # `index_by(&:transaction_id)` of the rows inserted
        for event in events:
            key = (event.external_subscription_id, event.transaction_id)
            if event.external_subscription_id is None or (
                key not in self._unique_keys and key not in batch_keys
            ):  # else ON CONFLICT DO NOTHING
                batch_keys.add(key)
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

    def _stored(self, event: Event) -> dict[str, Any]:
        """EventSerializer on the stored row: a jsonb round trip, or ClickHouse's events_raw."""
        if self.store is Store.POSTGRES:
            return stored_postgres(event)
        return stored_clickhouse(event, self.organization_id)
