"""The Lago emulator over a real socket, pinned by Lago's spec, its Python client and LiteLLM."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from lago_openapi import errors as openapi_errors
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError, LagoRateLimitError
from lago_python_client.models.event import BatchEvent, Event

from reconcile.lago_emulator import LagoEmulator, RequestRecord

API_KEY = "test-key-5f0c1a"
CLOCK = dt.datetime(2026, 11, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
CLOCK_TEXT = "2026-11-01T12:00:00.250Z"
UNAUTHORIZED = {"status": 401, "error": "Unauthorized"}
MISSING_EVENT = {
    "status": 400,
    "error": "BadRequest: param is missing or the value is empty or invalid: event",
}


@pytest.fixture
def lago() -> Iterator[LagoEmulator]:
    with LagoEmulator(api_key=API_KEY, clock=CLOCK) as emulator:
        yield emulator


@pytest.fixture
def client(lago: LagoEmulator) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=lago.url, headers=auth) as http:
        yield http


@pytest.fixture
def anonymous(lago: LagoEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lago.url) as http:
        yield http


@pytest.fixture
def spec(shared_dir: Path) -> Path:
    return shared_dir / "lago" / "openapi.yaml"


def conforms(spec: Path, schema: str, response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert openapi_errors(spec, schema, body) == []
    return body


def event(transaction_id: str = "t-1", **fields: Any) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "code": "tokens",
        "external_subscription_id": "s-1",
        **fields,
    }


def test_health_needs_no_key(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "version": "v1.51.0",
        "github_url": "https://github.com/getlago/lago-api/tree/v1.51.0",
        "message": "Success",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/events"), ("POST", "/api/v1/events/batch"),
     ("GET", "/api/v1/events"), ("GET", "/api/v1/events/t-1")],
)  # fmt: skip
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Bearer", f"{API_KEY}"])
def test_every_events_route_needs_the_key(
    anonymous: httpx.Client, spec: Path, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = anonymous.request(method, path, headers=headers, content=b"{not json")
    assert conforms(spec, "ApiErrorUnauthorized", response, 401) == UNAUTHORIZED


def test_lago_reads_the_second_word_of_authorization_whatever_the_scheme(
    anonymous: httpx.Client,
) -> None:
    response = anonymous.get("/api/v1/events", headers={"Authorization": f"Token {API_KEY}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/nope"), ("PUT", "/api/v1/events"), ("DELETE", "/api/v1/events/t-1"),
     ("POST", "/health"), ("GET", "/api/v1/events/a/b"), ("PATCH", "/api/v1/events/batch")],
)  # fmt: skip
def test_other_routes_are_resource_not_found_without_a_key(
    anonymous: httpx.Client, spec: Path, method: str, path: str
) -> None:
    response = anonymous.request(method, path)
    body = conforms(spec, "ApiErrorNotFound", response, 404)
    assert body == {"status": 404, "error": "Not Found", "code": "resource_not_found"}


def test_create_find_and_list(client: httpx.Client, spec: Path) -> None:
    sent = event(
        timestamp=1704067200.123,
        precise_total_amount_cents="12.5",
        properties={"model": "gpt-4o", "response_cost": 0.00042, "total_tokens": 30},
    )
    created = conforms(
        spec, "EventCreated", client.post("/api/v1/events", json={"event": sent}), 200
    )
    assert created["event"] == {
        "lago_id": created["event"]["lago_id"],
        "transaction_id": "t-1",
        "lago_customer_id": None,
        "code": "tokens",
        "timestamp": "2024-01-01T00:00:00.123Z",
        "precise_total_amount_cents": "12.5",
        "properties": sent["properties"],
        "lago_subscription_id": None,
        "external_subscription_id": "s-1",
        "created_at": "2026-11-01T12:00:00Z",
    }
    found = conforms(spec, "Event", client.get("/api/v1/events/t-1"), 200)
    assert found == created
    listed = conforms(spec, "EventsPaginated", client.get("/api/v1/events"), 200)
    assert listed["events"] == [created["event"]]


def test_keys_lago_does_not_permit_are_dropped(lago: LagoEmulator, client: httpx.Client) -> None:
    # Proxies older than Sept 2024 sent external_customer_id: Lago drops it silently.
    sent = event(external_customer_id="c-1", lago_id="mine", metadata={"a": 1})
    response = client.post("/api/v1/events", json={"event": sent})
    assert response.status_code == 200
    assert "external_customer_id" not in response.json()["event"]
    assert response.json()["event"]["lago_id"] != "mine"
    assert lago.stored_events() == [response.json()["event"]]


@pytest.mark.parametrize(
    "body",
    [{}, {"event": {}}, {"event": None}, {"event": " "}, {"event": []}, {"events": [event()]}],
)
def test_a_missing_event_is_a_400(client: httpx.Client, spec: Path, body: Any) -> None:
    response = client.post("/api/v1/events", json=body)
    assert conforms(spec, "ApiErrorBadRequest", response, 400) == MISSING_EVENT


def test_a_body_that_is_not_json_carries_no_event(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/events", content=b'{"event": {}}', headers={"Content-Type": "text/plain"}
    )
    assert (response.status_code, response.json()) == (400, MISSING_EVENT)


@pytest.mark.parametrize("value", ["t-1", [event()], False, 7])
def test_an_event_that_is_not_an_object_is_a_500(client: httpx.Client, value: Any) -> None:
    # `params.require(:event)` returns it, then `.permit` raises NoMethodError.
    response = client.post("/api/v1/events", json={"event": value})
    assert (response.status_code, response.json()) == (
        500,
        {"status": 500, "error": "Internal Server Error"},
    )


@pytest.mark.parametrize("content", [b'{"event": {', b'{"event": NaN}', b"  "])
def test_malformed_json_is_rails_400(client: httpx.Client, spec: Path, content: bytes) -> None:
    for path in ("/api/v1/events", "/api/v1/events/batch"):
        response = client.post(path, content=content, headers={"Content-Type": "application/json"})
        body = conforms(spec, "ApiErrorBadRequest", response, 400)
        assert body == {"status": 400, "error": "Bad Request"}


def test_validation_errors(client: httpx.Client, spec: Path) -> None:
    def error_details(response: httpx.Response) -> Any:
        body = conforms(spec, "ApiErrorUnprocessableEntity", response, 422)
        assert (body["status"], body["error"], body["code"]) == (
            422,
            "Unprocessable Entity",
            "validation_errors",
        )
        return body["error_details"]

    post = client.post
    assert post("/api/v1/events", json={"event": event()}).status_code == 200
    duplicate = post("/api/v1/events", json={"event": event(timestamp=1)})
    assert error_details(duplicate) == {"transaction_id": ["value_already_exist"]}
    missing = post("/api/v1/events", json={"event": {"properties": {}}})
    assert error_details(missing) == {
        "transaction_id": ["value_is_mandatory"],
        "code": ["value_is_mandatory"],
    }
    iso = post("/api/v1/events", json={"event": event("t-2", timestamp="2024-01-01T00:00:00Z")})
    assert error_details(iso) == {"timestamp": ["invalid_format"]}
    batch = post("/api/v1/events/batch", json={"events": [event("t-3"), event()]})
    assert error_details(batch) == {"1": {"transaction_id": ["value_already_exist"]}}
    assert error_details(post("/api/v1/events/batch", json={"events": []})) == {
        "events": ["no_events"]
    }
    many = {"events": [event(f"t-{i}") for i in range(101)]}
    assert error_details(post("/api/v1/events/batch", json=many)) == {"events": ["too_many_events"]}
    bad_date = client.get("/api/v1/events", params={"timestamp_from": "01/02/2024"})
    assert error_details(bad_date) == {"timestamp_from": ["invalid_date"]}


def test_event_not_found(client: httpx.Client, spec: Path) -> None:
    body = conforms(spec, "ApiErrorNotFound", client.get("/api/v1/events/nope"), 404)
    assert body == {"status": 404, "error": "Not Found", "code": "event_not_found"}


def test_find_decodes_the_transaction_id(client: httpx.Client) -> None:
    assert client.post("/api/v1/events", json={"event": event("a/b c?.json")}).status_code == 200
    response = client.get("/api/v1/events/a%2Fb%20c%3F.json")
    assert response.json()["event"]["transaction_id"] == "a/b c?.json"


def test_listing_with_nothing_to_show(client: httpx.Client, spec: Path) -> None:
    body = conforms(spec, "EventsPaginated", client.get("/api/v1/events?code=none"), 200)
    assert body == {
        "events": [],
        "meta": {
            "current_page": 0,
            "next_page": None,
            "prev_page": None,
            "total_pages": 0,
            "total_count": 0,
        },
    }


def test_listing_filters_sorts_and_pages(client: httpx.Client, spec: Path) -> None:
    events = [
        event(f"t-{i}", timestamp=1704067200 + i // 2, code="a" if i % 3 else "b") for i in range(7)
    ]
    assert client.post("/api/v1/events/batch", json={"events": events}).status_code == 200
    query = "code=a&timestamp_from=2024-01-01T00:00:01Z&per_page=9&per_page=2&page=2"
    body = conforms(spec, "EventsPaginated", client.get(f"/api/v1/events?{query}"), 200)
    # code a: t-1, t-2, t-4, t-5; from 00:00:01: t-2, t-4, t-5; by time desc: t-4 and t-5
    # (tied, so by transaction_id), then t-2.
    assert [shown["transaction_id"] for shown in body["events"]] == ["t-2"]
    assert body["meta"] == {
        "current_page": 2,
        "next_page": None,
        "prev_page": 1,
        "total_pages": 2,
        "total_count": 3,
    }


def test_events_without_subscription_break_the_spec(client: httpx.Client, spec: Path) -> None:
    """Lago answers null where its spec promises a string: the spec is wrong, not the emulator."""
    response = client.post("/api/v1/events", json={"event": {"transaction_id": "t", "code": "c"}})
    assert openapi_errors(spec, "EventCreated", response.json()) == [
        "event/external_subscription_id: None is not of type 'string'"
    ]


def test_batches_are_permitted_and_munged_like_rails(
    lago: LagoEmulator, client: httpx.Client
) -> None:
    # Rails drops nulls from arrays (deep_munge) and `permit` drops non-objects: indices shift.
    items = [None, "junk", event("t-1"), {"code": "c"}]
    response = client.post("/api/v1/events/batch", json={"events": items})
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_is_mandatory"]}}
    response = client.post(
        "/api/v1/events/batch", json={"events": [None, event("t-1", properties={"l": [1, None]})]}
    )
    assert response.status_code == 200
    assert [shown["properties"] for shown in lago.stored_events()] == [{"l": [1]}]


def test_batch_answers_every_event(client: httpx.Client, spec: Path) -> None:
    response = client.post("/api/v1/events/batch", json={"events": [event("a"), event("b")]})
    body = conforms(spec, "EventsCreated", response, 200)
    assert [shown["transaction_id"] for shown in body["events"]] == ["a", "b"]
    assert all(shown["created_at"] == "2026-11-01T12:00:00Z" for shown in body["events"])


def test_clickhouse_store_over_http(spec: Path) -> None:
    with (
        LagoEmulator(api_key=API_KEY, store="clickhouse", clock=CLOCK) as lago,
        httpx.Client(base_url=lago.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        for _ in range(2):
            body = conforms(
                spec, "EventCreated", http.post("/api/v1/events", json={"event": event()}), 200
            )
            assert (body["event"]["lago_id"], body["event"]["created_at"]) == (None, None)
        listed = conforms(spec, "EventsPaginated", http.get("/api/v1/events"), 200)
        assert [shown["transaction_id"] for shown in listed["events"]] == ["t-1", "t-1"]
        assert conforms(spec, "Event", http.get("/api/v1/events/t-1"), 200)["event"]["lago_id"]


def test_legacy_partial_batches_over_http() -> None:
    with LagoEmulator(api_key=API_KEY, legacy_partial_batches=True) as lago:
        url, auth = f"{lago.url}/api/v1/events/batch", {"Authorization": f"Bearer {API_KEY}"}
        response = httpx.post(url, headers=auth, json={"events": [event("a"), event("a")]})
        assert response.status_code == 422
        assert [shown["transaction_id"] for shown in lago.stored_events()] == ["a"]


def test_the_clock_stamps_events_without_timestamp(
    lago: LagoEmulator, client: httpx.Client
) -> None:
    first = client.post("/api/v1/events", json={"event": event("a")}).json()["event"]
    lago.advance(1.5)
    second = client.post("/api/v1/events", json={"event": event("b")}).json()["event"]
    lago.set_clock(dt.datetime(2027, 1, 1))  # naive: read as UTC
    third = client.post("/api/v1/events", json={"event": event("c")}).json()["event"]
    lago.advance(dt.timedelta(days=1))
    assert [shown["timestamp"] for shown in (first, second, third)] == [
        CLOCK_TEXT,
        "2026-11-01T12:00:01.750Z",
        "2027-01-01T00:00:00.000Z",
    ]
    assert lago.now() == dt.datetime(2027, 1, 2)


def test_without_a_clock_reception_time_is_now() -> None:
    with LagoEmulator(api_key=API_KEY) as lago:
        before = dt.datetime.now(dt.UTC)
        auth = {"Authorization": f"Bearer {API_KEY}"}
        shown = httpx.post(
            f"{lago.url}/api/v1/events", headers=auth, json={"event": event()}
        ).json()["event"]
        after = dt.datetime.now(dt.UTC)
    stamped = dt.datetime.fromisoformat(shown["timestamp"])
    assert before - dt.timedelta(milliseconds=1) <= stamped <= after


# Faults
def test_rate_limits_answer_429_with_lago_clouds_headers(
    lago: LagoEmulator, client: httpx.Client
) -> None:
    lago.faults.rate_limit(2, reset_seconds=3, limit=50)
    for _ in range(2):
        response = client.post("/api/v1/events", json={"event": event()})
        assert (response.status_code, response.json()) == (
            429,
            {"status": 429, "error": "Too Many Requests"},
        )
        limits = {
            name: response.headers[name]
            for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
        }
        assert limits == {
            "x-ratelimit-limit": "50",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": "3",
        }
    assert lago.stored_events() == []
    assert client.post("/api/v1/events", json={"event": event()}).status_code == 200


def test_server_errors(lago: LagoEmulator, client: httpx.Client) -> None:
    lago.faults.server_error(2, status=502)
    answers = [client.get("/api/v1/events") for _ in range(3)]
    assert [response.status_code for response in answers] == [502, 502, 200]
    assert answers[0].json() == {"status": 502, "error": "Bad Gateway"}


def test_latency(lago: LagoEmulator, client: httpx.Client) -> None:
    lago.faults.latency(0.3)
    started = time.monotonic()
    assert client.get("/api/v1/events").status_code == 200
    assert time.monotonic() - started >= 0.3
    lago.faults.clear()
    started = time.monotonic()
    client.get("/api/v1/events")
    assert time.monotonic() - started < 0.3


def test_per_page_cap(lago: LagoEmulator, client: httpx.Client) -> None:
    client.post("/api/v1/events/batch", json={"events": [event(f"t-{i}") for i in range(5)]})
    lago.faults.per_page_cap(2)
    body = client.get("/api/v1/events", params={"per_page": 100}).json()
    assert (len(body["events"]), body["meta"]["total_pages"]) == (2, 3)
    lago.faults.per_page_cap(None)
    assert len(client.get("/api/v1/events").json()["events"]) == 5


def test_dropped_connections(lago: LagoEmulator, client: httpx.Client) -> None:
    lago.faults.drop_connections(1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/v1/events", json={"event": event()})
    assert lago.stored_events() == []
    assert client.post("/api/v1/events", json={"event": event()}).status_code == 200
    assert [record.status for record in lago.requests] == [None, 200]


def test_faults_come_in_order_drop_429_5xx(lago: LagoEmulator, anonymous: httpx.Client) -> None:
    lago.faults.server_error(1)
    lago.faults.rate_limit(1)
    lago.faults.drop_connections(1)
    outcomes: list[int | None] = []
    for _ in range(4):
        try:
            outcomes.append(anonymous.get("/health").status_code)
        except httpx.RemoteProtocolError:
            outcomes.append(None)
    assert outcomes == [None, 429, 503, 200]


def test_concurrent_requests_and_faults_are_counted_exactly(
    lago: LagoEmulator, client: httpx.Client
) -> None:
    lago.faults.rate_limit(10)

    def send(i: int) -> int:
        return client.post("/api/v1/events", json={"event": event(f"t-{i}")}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(200)))
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(429) == 10
    assert len(lago.stored_events()) == 190
    assert lago.request_count == 200


def test_the_request_log_and_reprs_hide_the_key(lago: LagoEmulator, client: httpx.Client) -> None:
    client.get("/api/v1/events", params={"code": "x"})
    client.post("/api/v1/events", json={"event": event()})
    assert lago.requests == [
        RequestRecord("GET", "/api/v1/events", "code=x", 200),
        RequestRecord("POST", "/api/v1/events", "", 200),
    ]
    assert lago.request_count == 2
    assert API_KEY not in repr(lago) + repr(lago.requests) + repr(lago.faults)


def test_stopping_closes_the_socket() -> None:
    emulator = LagoEmulator(api_key=API_KEY).start()
    url = emulator.url
    with httpx.Client() as http:  # a kept-alive connection must not keep the server alive
        assert http.get(f"{url}/health").status_code == 200
        emulator.stop()
        with pytest.raises(httpx.TransportError):
            http.get(f"{url}/health")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


# Lago's official Python client
@pytest.fixture
def lago_client(lago: LagoEmulator) -> Any:
    # Any: the official client's generic mixins do not type-check (lago-python-client's own).
    return Client(api_key=API_KEY, api_url=lago.url)


def test_official_client_create_batch_and_find(lago: LagoEmulator, lago_client: Any) -> None:
    created = lago_client.events.create(
        Event(
            transaction_id="t-1",
            external_subscription_id="s-1",
            code="tokens",
            timestamp=1704067200,
            precise_total_amount_cents="1.5",
            properties={"gb": 10},
        )
    )
    assert created is not None
    assert (created.transaction_id, created.timestamp, created.precise_total_amount_cents) == (
        "t-1",
        "2024-01-01T00:00:00.000Z",
        "1.5",
    )
    # The ignores on Event(...): its optional fields are pydantic v1's, which mypy reads
    # without pydantic's plugin as required.
    batch = BatchEvent(
        events=[
            Event(transaction_id=f"b-{i}", external_subscription_id="s-1", code="tokens")  # type: ignore[call-arg]
            for i in range(3)
        ]
    )
    assert lago_client.events.batch_create(batch) is None
    found = lago_client.events.find("b-2")
    assert (found.transaction_id, found.timestamp, found.created_at) == (
        "b-2",
        CLOCK_TEXT,
        "2026-11-01T12:00:00Z",
    )
    assert found.lago_id == lago.stored_events()[-1]["lago_id"]


def test_official_client_parses_lagos_errors(lago: LagoEmulator, lago_client: Any) -> None:
    sent = Event(transaction_id="t-1", external_subscription_id="s-1", code="tokens")  # type: ignore[call-arg]
    lago_client.events.create(sent)
    with pytest.raises(LagoApiError) as duplicate:
        lago_client.events.create(sent)
    assert duplicate.value.status_code == 422
    assert duplicate.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}
    with pytest.raises(LagoApiError) as missing:
        lago_client.events.find("nope")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "event_not_found")
    wrong_key: Any = Client(api_key="wrong", api_url=lago.url)  # Any: see lago_client
    with pytest.raises(LagoApiError) as unauthorized:
        wrong_key.events.find("t-1")
    assert (unauthorized.value.status_code, unauthorized.value.response) == (401, UNAUTHORIZED)
    with pytest.raises(LagoApiError) as duplicates:
        lago_client.events.batch_create(BatchEvent(events=[sent]))
    assert duplicates.value.response["error_details"] == {
        "0": {"transaction_id": ["value_already_exist"]}
    }


def test_official_client_retries_rate_limits(lago: LagoEmulator, lago_client: Any) -> None:
    lago.faults.rate_limit(2, reset_seconds=0)
    lago_client.events.create(Event(transaction_id="t-1", external_subscription_id="s-1", code="c"))  # type: ignore[call-arg]
    assert [record.status for record in lago.requests] == [429, 429, 200]
    lago.faults.rate_limit(10, reset_seconds=0, limit=25)
    with pytest.raises(LagoRateLimitError) as limited:
        lago_client.events.find("t-1")
    assert (limited.value.limit, limited.value.remaining, limited.value.reset) == (25, 0, 0)


# LiteLLM's own Lago callback
@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
@pytest.mark.parametrize(
    ("charge_by", "metadata", "user"),
    [("end_user_id", {}, "customer-9"),
     ("user_id", {"user_api_key_user_id": "customer-9"}, None),
     ("team_id", {"user_api_key_team_id": "customer-9"}, None)],
)  # fmt: skip
def test_litellms_lago_logger_stores_what_lago_would(
    lago: LagoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    charge_by: str,
    metadata: dict[str, str],
    user: str | None,
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    from litellm.integrations.lago import LagoLogger

    monkeypatch.setenv("LAGO_API_BASE", lago.url)
    monkeypatch.setenv("LAGO_API_KEY", API_KEY)
    monkeypatch.setenv("LAGO_API_EVENT_CODE", "llm_usage")
    monkeypatch.setenv("LAGO_API_CHARGE_BY", charge_by)
    usage = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    response = litellm.ModelResponse(model="gpt-4o-mini", usage=usage)
    body = {"user": user} if user else {}
    kwargs = {
        "model": "gpt-4o-mini",
        "response_cost": 1.35e-05,
        "litellm_params": {"proxy_server_request": {"body": body}, "metadata": metadata},
    }

    async def log_twice() -> None:
        logger = LagoLogger()
        await logger.async_log_success_event(kwargs, response, None, None)
        lago.faults.server_error(1)
        with pytest.raises(httpx.HTTPStatusError):  # logged by LiteLLM, never retried
            await logger.async_log_success_event(kwargs, response, None, None)

    asyncio.run(log_twice())
    [stored] = lago.stored_events()
    assert uuid.UUID(stored["transaction_id"]).version == 4
    assert stored == {
        "lago_id": stored["lago_id"],
        "transaction_id": stored["transaction_id"],
        "lago_customer_id": None,
        "code": "llm_usage",
        "timestamp": CLOCK_TEXT,  # sent without one: reception time
        "precise_total_amount_cents": None,
        "properties": {"model": "gpt-4o-mini", "response_cost": 1.35e-05, **usage},
        "lago_subscription_id": None,
        "external_subscription_id": "customer-9",
        "created_at": "2026-11-01T12:00:00Z",
    }
    assert [(record.method, record.path, record.status) for record in lago.requests] == [
        ("POST", "/api/v1/events", 200),
        ("POST", "/api/v1/events", 503),
    ]


# Preloading: what single POSTs would have stored, without HTTP
def test_preload_stores_what_posts_store(lago: LagoEmulator, client: httpx.Client) -> None:
    sent = [
        event("a", timestamp=1704067200.123, properties={"l": [1, None], "bb": 2, "a": 1}),
        event("b"),  # LiteLLM's live callback sends no timestamp: reception time
        event("c", timestamp="1704067200.123456", precise_total_amount_cents="12.5"),
        event("d", external_subscription_id=None, code=7),
        event("e", metadata={"ignored": True}, timestamp=1704067201),
    ]
    receptions = [CLOCK + dt.timedelta(seconds=seconds) for seconds in range(len(sent))]
    for params, at in zip(sent, receptions, strict=True):
        lago.set_clock(at)
        assert client.post("/api/v1/events", json={"event": params}).status_code == 200
    with LagoEmulator(api_key=API_KEY) as preloaded:
        reception = iter(receptions)
        assert preloaded.preload(sent, received=lambda _: next(reception)) == len(sent)
        assert preloaded.requests == []
        auth = {"Authorization": f"Bearer {API_KEY}"}
        listed = httpx.get(f"{preloaded.url}/api/v1/events", headers=auth).json()

    def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**shown, "lago_id": None} for shown in events]

    assert without_ids(listed["events"]) == without_ids(
        client.get("/api/v1/events").json()["events"]
    )
    assert without_ids(preloaded.stored_events()) == without_ids(lago.stored_events())


def test_preload_refusals_name_the_event(lago: LagoEmulator) -> None:
    with pytest.raises(
        ValueError, match=r"event 2 \(transaction_id 'a'\) refused: Lago answers 422"
    ):
        lago.preload([event("a"), event("b"), event("a")])
    assert [shown["transaction_id"] for shown in lago.stored_events()] == ["a", "b"]
    assert lago.preload([]) == 0


def test_preload_stamps_with_the_emulators_clock(lago: LagoEmulator) -> None:
    lago.preload([event("a")])
    lago.preload([event("b")], received=dt.datetime(2027, 1, 1))
    assert [shown["timestamp"] for shown in lago.stored_events()] == [
        CLOCK_TEXT,
        "2027-01-01T00:00:00.000Z",
    ]


def test_listings_see_events_stored_since(lago: LagoEmulator, client: httpx.Client) -> None:
    lago.preload(event(f"t-{i}", timestamp=1704067200 + i) for i in range(5))
    assert client.get("/api/v1/events").json()["meta"]["total_count"] == 5
    client.post("/api/v1/events", json={"event": event("t-9", timestamp=1704067300)})
    listed = client.get("/api/v1/events", params={"per_page": 2}).json()
    assert [shown["transaction_id"] for shown in listed["events"]] == ["t-9", "t-4"]
    assert listed["meta"]["total_count"] == 6


@pytest.mark.parametrize("store", ["postgres", "clickhouse"])
def test_a_preloaded_day_lists_in_hour_slices(store: str) -> None:
    rng = random.Random(3)
    day = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    offsets = sorted(rng.randrange(86_400 * 10**6) for _ in range(20_000))
    sent = [
        event(str(uuid.UUID(int=rng.getrandbits(128), version=4)),
              external_subscription_id=f"cust_{rng.randrange(500):04d}")
        for _ in offsets
    ]  # fmt: skip
    times = iter(day + dt.timedelta(microseconds=offset) for offset in offsets)
    with LagoEmulator(api_key=API_KEY, store=store) as lago:
        assert lago.preload(sent, received=lambda _: next(times)) == len(sent)
        auth = {"Authorization": f"Bearer {API_KEY}"}
        seen: list[str] = []
        with httpx.Client(base_url=lago.url, headers=auth) as http:
            for hour in range(24):
                start = day + dt.timedelta(hours=hour)
                query: dict[str, str | int] = {
                    "code": "tokens",
                    "timestamp_from": f"{start:%Y-%m-%dT%H}:00:00Z",
                    "timestamp_to": f"{start:%Y-%m-%dT%H}:59:59.999999Z",
                    "per_page": 2000,
                }
                page = 1
                while page:
                    body = http.get("/api/v1/events", params={**query, "page": page}).json()
                    stamps = [shown["timestamp"] for shown in body["events"]]
                    assert stamps == sorted(stamps, reverse=True)  # latest first
                    assert all(stamp.startswith(f"{start:%Y-%m-%dT%H}") for stamp in stamps)
                    seen.extend(shown["transaction_id"] for shown in body["events"])
                    page = body["meta"]["next_page"]
            subscription = http.get(
                "/api/v1/events",
                params={"external_subscription_id": "cust_0007", "code": "tokens", "per_page": 1},
            ).json()
    assert sorted(seen) == sorted(params["transaction_id"] for params in sent)
    expected = sum(params["external_subscription_id"] == "cust_0007" for params in sent)
    assert subscription["meta"]["total_count"] == expected
