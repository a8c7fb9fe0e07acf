"""Reading a subscription's invoiced periods from Lago: the client over a real socket."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconcile.errors import ConfigError, LagoError, LagoUnavailable
from reconcile.lago.billing import (
    NEVER_RECOMPUTED,
    Period,
    finalized_periods,
    subscriptions,
)
from reconcile.lago.client import LagoClient
from reconcile.lago.retry import RetryPolicy
from reconcile.lago_emulator import LagoEmulator

KEY = "test-key-41c8e2"
UTC = dt.UTC
CLOCK = dt.datetime(2026, 12, 15, 12, tzinfo=UTC)


def month(year: int, number: int) -> tuple[dt.datetime, dt.datetime]:
    """A calendar month as Lago stores its charges period: inclusive, to the microsecond."""
    start = dt.datetime(year, number, 1, tzinfo=UTC)
    following = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, following - dt.timedelta(microseconds=1)


def period(year: int, number: int) -> Period:
    start, last = month(year, number)
    return Period(start, last + dt.timedelta(microseconds=1))


class FakeTime:
    """A clock that moves only when the client sleeps: retries cost no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def lago() -> Iterator[LagoEmulator]:
    with LagoEmulator(api_key=KEY, clock=CLOCK) as emulator:
        yield emulator


@pytest.fixture
def client(lago: LagoEmulator) -> Iterator[LagoClient]:
    fake = FakeTime()
    with LagoClient(lago.url, KEY, sleep=fake.sleep, clock=fake.clock) as reader:
        yield reader


def test_only_finalized_invoices_close_their_period(lago: LagoEmulator, client: LagoClient) -> None:
    lago.add_subscription("sub-a", "cust-1", started_at=dt.datetime(2026, 8, 1))
    lago.add_invoice("sub-a", *month(2026, 8), status="voided")
    lago.add_invoice("sub-a", *month(2026, 9))
    lago.add_invoice("sub-a", *month(2026, 10), status="pending")  # waits for taxes
    november = lago.add_invoice("sub-a", *month(2026, 11), status="draft")  # grace period
    assert finalized_periods(client, "sub-a") == [period(2026, 9)]
    # Voided and pending invoices are never computed again either: the strict reading.
    assert finalized_periods(client, "sub-a", statuses=NEVER_RECOMPUTED) == [
        period(2026, 8),
        period(2026, 9),
        period(2026, 10),
    ]
    lago.set_invoice_status(november["lago_id"], "finalized")
    assert finalized_periods(client, "sub-a") == [period(2026, 9), period(2026, 11)]


def test_a_period_holds_what_lago_bills(lago: LagoEmulator, client: LagoClient) -> None:
    lago.add_subscription("sub-a", "cust-1")
    lago.add_invoice("sub-a", *month(2026, 10))
    (october,) = finalized_periods(client, "sub-a") or []
    start, end = october  # unpacks as (start, end)
    assert (start, end) == (
        dt.datetime(2026, 10, 1, tzinfo=UTC),
        dt.datetime(2026, 11, 1, tzinfo=UTC),
    )
    # Lago bills start <= timestamp <= 23:59:59.999999, which it prints as 23:59:59Z.
    assert october.covers(dt.datetime(2026, 10, 31, 23, 59, 59, 999000, tzinfo=UTC))
    assert october.covers(start)
    assert not october.covers(end)
    assert not october.covers(start - dt.timedelta(microseconds=1))


def test_periods_that_billed_no_charges_stay_open(lago: LagoEmulator, client: LagoClient) -> None:
    lago.add_subscription("sub-a", "cust-1")
    # A plan paid in advance bills its first period's fee with no charges period.
    instant = dt.datetime(2026, 10, 5, 8, 30, tzinfo=UTC)
    lago.add_invoice("sub-a", instant, instant, invoicing_reason="subscription_starting")
    # Termination bills the charges up to the termination time.
    terminated = dt.datetime(2026, 11, 20, 8, 30, 15, 400000, tzinfo=UTC)
    start = dt.datetime(2026, 11, 1, tzinfo=UTC)
    lago.add_invoice("sub-a", start, terminated, invoicing_reason="subscription_terminating")
    assert finalized_periods(client, "sub-a") == [
        Period(start, dt.datetime(2026, 11, 20, 8, 30, 16, tzinfo=UTC))  # printed to the second
    ]


def test_an_unknown_subscription_is_none_a_known_one_a_list(
    lago: LagoEmulator, client: LagoClient
) -> None:
    lago.add_subscription("sub-a", "cust-1")
    assert finalized_periods(client, "sub-z") is None
    assert finalized_periods(client, "sub-a") == []
    assert [record.path for record in lago.requests] == [
        "/api/v1/subscriptions",
        "/api/v1/subscriptions",
        "/api/v1/invoices",
    ]


def test_other_subscriptions_and_customers_are_not_mixed_in(
    lago: LagoEmulator, client: LagoClient
) -> None:
    lago.add_subscription("sub-a", "cust-1")
    lago.add_subscription("sub-b", "cust-1")
    lago.add_subscription("sub-c", "cust-2")
    lago.add_invoice(["sub-a", "sub-b"], *month(2026, 10))  # one invoice for the customer's day
    lago.add_invoice("sub-b", *month(2026, 11))
    lago.add_invoice("sub-c", *month(2026, 9))
    assert finalized_periods(client, "sub-a") == [period(2026, 10)]
    assert finalized_periods(client, "sub-b") == [period(2026, 10), period(2026, 11)]
    invoice_queries = [
        record.query for record in lago.requests if record.path == "/api/v1/invoices"
    ]
    assert all("external_customer_id=cust-1" in query for query in invoice_queries)


def test_every_subscription_under_the_id_counts(lago: LagoEmulator, client: LagoClient) -> None:
    # A plan change terminates the subscription and starts another with the same id; an id
    # freed by termination can even be taken by another customer.
    lago.add_subscription(
        "sub-a", "cust-1", status="terminated",
        started_at=dt.datetime(2026, 8, 1), terminated_at=dt.datetime(2026, 9, 1),
    )  # fmt: skip
    lago.add_subscription("sub-a", "cust-1", plan_code="pro", started_at=dt.datetime(2026, 9, 1))
    lago.add_invoice("sub-a", *month(2026, 9))
    lago.add_subscription(
        "sub-a", "cust-2", status="terminated",
        started_at=dt.datetime(2025, 1, 1), terminated_at=dt.datetime(2025, 2, 1),
    )  # fmt: skip
    lago.add_invoice("sub-a", *month(2025, 1), invoicing_reason="subscription_terminating")
    assert sorted(one["status"] for one in subscriptions(client, "sub-a")) == [
        "active",
        "terminated",
        "terminated",
    ]
    assert finalized_periods(client, "sub-a") == [period(2025, 1), period(2026, 9)]


def test_every_page_is_read(lago: LagoEmulator, client: LagoClient) -> None:
    lago.add_subscription("sub-a", "cust-1", started_at=dt.datetime(2016, 1, 1))
    lago.add_subscription("sub-b", "cust-1")
    months = [(2016 + index // 12, index % 12 + 1) for index in range(130)]
    for year, number in months:
        lago.add_invoice("sub-a", *month(year, number))
    lago.add_invoice("sub-b", *month(2026, 1))
    assert finalized_periods(client, "sub-a") == [period(*when) for when in months]
    pages = [record.query for record in lago.requests if record.path == "/api/v1/invoices"]
    assert len(pages) == 2  # 131 invoices, 100 a page
    lago.faults.per_page_cap(7)  # a Lago with a lower Kaminari max_per_page
    assert len(finalized_periods(client, "sub-a") or []) == 130


def test_a_wrong_key_is_a_configuration_error(
    lago: LagoEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with LagoClient(lago.url, "wrong-key-9d1f") as client, pytest.raises(ConfigError) as caught:
        finalized_periods(client, "sub-a")
    assert "LAGO_API_KEY" in str(caught.value)
    assert "wrong-key-9d1f" not in str(caught.value) + caplog.text


@pytest.mark.parametrize("resource", ["subscription", "invoice"])
def test_a_key_that_may_not_read_is_told_so(
    lago: LagoEmulator, client: LagoClient, resource: str
) -> None:
    lago.add_subscription("sub-a", "cust-1")
    lago.add_invoice("sub-a", *month(2026, 10))
    lago.deny_read(resource)
    with pytest.raises(
        ConfigError, match=f"read_action_not_allowed_for_{resource}.*read permission"
    ):
        finalized_periods(client, "sub-a")


def test_lago_in_trouble_is_retried(lago: LagoEmulator, client: LagoClient) -> None:
    lago.add_subscription("sub-a", "cust-1")
    lago.add_invoice("sub-a", *month(2026, 10))
    lago.faults.server_error(2)
    lago.faults.drop_connections(1)
    assert finalized_periods(client, "sub-a") == [period(2026, 10)]
    lago.faults.server_error(1000)
    with pytest.raises(LagoUnavailable, match="running again later is safe"):
        finalized_periods(client, "sub-a")


def test_a_base_url_that_is_not_lago_is_a_configuration_error(lago: LagoEmulator) -> None:
    with (
        LagoClient(f"{lago.url}/nothing", KEY) as client,
        pytest.raises(ConfigError, match="LAGO_API_BASE"),
    ):
        finalized_periods(client, "sub-a")


def old_lago(routes: dict[str, Any]) -> LagoClient:
    """A client of a fake Lago answering each path with a fixed body, whatever the query."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=routes[request.url.path])

    retry = RetryPolicy(total_seconds=0)
    return LagoClient("http://lago.test", KEY, transport=httpx.MockTransport(handle), retry=retry)


META = {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1, "total_count": 2}


def test_a_lago_before_the_external_id_filter_still_answers_right() -> None:
    # Before v1.49 the subscriptions list ignores external_id: every subscription comes back.
    held = [
        {"external_id": "sub-other", "external_customer_id": "cust-9", "status": "active"},
        {"external_id": "sub-a", "external_customer_id": "cust-1", "status": "active"},
    ]
    invoice = {"lago_id": "i-1", "status": "finalized", "invoice_type": "subscription"}
    billing_period = {
        "external_subscription_id": "sub-a",
        "charges_from_datetime": "2026-10-01T00:00:00+02:00",
        "charges_to_datetime": "2026-10-31T22:59:59Z",
        "invoicing_reason": "subscription_periodic",
    }
    draft = {**invoice, "lago_id": "i-2", "status": "draft"}  # the status filter is ignored too
    draft_period = {
        **billing_period,
        "charges_from_datetime": "2026-11-01T00:00:00Z",
        "charges_to_datetime": "2026-11-30T23:59:59Z",
    }
    routes = {
        "/api/v1/subscriptions": {"subscriptions": held, "meta": META},
        "/api/v1/invoices": {"invoices": [invoice, draft], "meta": META},
        "/api/v1/invoices/i-1": {"invoice": {**invoice, "billing_periods": [billing_period]}},
        "/api/v1/invoices/i-2": {"invoice": {**draft, "billing_periods": [draft_period]}},
    }
    with old_lago(routes) as client:
        assert subscriptions(client, "sub-a") == [held[1]]
        assert finalized_periods(client, "sub-a") == [
            Period(
                dt.datetime(2026, 9, 30, 22, tzinfo=UTC), dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
            )
        ]


@pytest.mark.parametrize(
    ("invoice", "problem"),
    [
        ({"number": "N-1"}, "shows no billing_periods: Lago shows them since v1.19"),
        (
            {"number": "N-1", "billing_periods": [{
                "external_subscription_id": "sub-a", "invoicing_reason": "subscription_periodic",
                "charges_from_datetime": "2026-10-01", "charges_to_datetime": "2026-10-31",
            }]},
            "charges_from_datetime='2026-10-01', not an ISO 8601 time with a zone",
        ),
    ],
)  # fmt: skip
def test_invoices_lago_never_shows_are_refused(invoice: dict[str, Any], problem: str) -> None:
    held = {"external_id": "sub-a", "external_customer_id": "cust-1"}
    listed = {"lago_id": "i-1", "status": "finalized", "invoice_type": "subscription"}
    routes = {
        "/api/v1/subscriptions": {"subscriptions": [held], "meta": META},
        "/api/v1/invoices": {"invoices": [listed], "meta": META},
        "/api/v1/invoices/i-1": {"invoice": invoice},
    }
    with old_lago(routes) as client, pytest.raises(LagoError, match=problem):
        finalized_periods(client, "sub-a")


def test_a_listing_that_loops_is_refused() -> None:
    looping = {**META, "current_page": 1, "next_page": 1}
    routes = {"/api/v1/subscriptions": {"subscriptions": [], "meta": looping}}
    with old_lago(routes) as client, pytest.raises(LagoError, match="points to page 1 next"):
        subscriptions(client, "sub-a")
    routes = {"/api/v1/subscriptions": {"data": []}}
    with old_lago(routes) as client, pytest.raises(LagoError, match="without 'subscriptions'"):
        subscriptions(client, "sub-a")
