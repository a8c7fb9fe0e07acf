"""Lago's subscriptions and invoices (lago-api v1.51.0): the listings a report reads, and fills.

Copied from config/routes.rb, api/v1/subscriptions_controller.rb#index with
concerns/subscription_index.rb and queries/subscriptions_query.rb, api/v1/invoices_controller.rb
(#index, #show) with concerns/invoice_index.rb, queries/invoices_query.rb and
contracts/queries/invoices_query_filters_contract.rb, and ApiKey#permit?. Of the invoice
filters, only the customer, `status`/`statuses` and `invoice_type` are applied; the others
are ignored. Pagination counts are exact (Lago may serve a cached count on pages but the last).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from reconcile.lago_emulator.invoice import (
    BillingPeriod,
    Customer,
    Invoice,
    Organization,
    Subscription,
    invoice_json,
    subscription_json,
)
from reconcile.lago_emulator.store import INTERNAL_ERROR, Reply, not_found, validation_errors
from reconcile.lago_emulator.values import (
    kaminari_limit,
    micros,
    pagination_meta,
    random_uuid,
    ruby_to_i,
)

INVOICE_STATUSES = ("draft", "finalized", "voided", "failed", "pending")  # VISIBLE_STATUS
INVOICE_TYPES = ("subscription", "add_on", "credit", "one_off", "advance_charges")  # not emulated:
# progressive_billing, whose invoices carry applied_usage_thresholds
INVOICING_REASONS = ("subscription_starting", "subscription_periodic", "subscription_terminating")
SUBSCRIPTION_STATUSES = ("pending", "active", "terminated", "canceled", "incomplete")
RESOURCES = ("subscription", "invoice")  # ApiKey::RESOURCES these routes check
_API = "/api/v1/"
_BAD_STATUS = f"must be one of: {', '.join(INVOICE_STATUSES)}"  # dry-validation's words

Route = tuple[str, str | None]  # (resource, lago_id): None for the collection
Params = Mapping[str, str | list[str]]


def billing_route(method: str, path: str) -> Route | None:
    """The billing action a request reaches; None: not one of these routes."""
    if method != "GET" or not path.startswith(_API):
        return None
    *parents, last = path.removeprefix(_API).split("/")
    name, _, extension = last.partition(".")  # Rails' (.:format): segments stop at a dot
    if "." in extension or not name:
        return None
    if not parents and name in ("subscriptions", "invoices"):
        return name.removesuffix("s"), None
    if parents == ["invoices"]:
        return "invoice", unquote(name)
    return None


def rack_query(query: str) -> dict[str, str | list[str]]:
    """Rack's parameters: `name[]` collects a list; otherwise the last value wins."""
    params: dict[str, str | list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.endswith("[]"):
            known = params.get(name[:-2])
            params[name[:-2]] = [*known, value] if isinstance(known, list) else [value]
        else:
            params[name] = value
    return params


class Billing:
    """One organization's customers, subscriptions and invoices, and Lago's answers about them.

    Filled by the helpers (`add_subscription`, `add_invoice`, ...), read over HTTP. Naive
    datetimes are read as UTC. Safe to use from any thread.
    """

    def __init__(self, clock: Callable[[], datetime], organization_id: str | None = None) -> None:
        self.organization = Organization(organization_id or random_uuid())
        self._clock = clock
        self._lock = threading.Lock()
        self._customers: dict[str, Customer] = {}
        self._subscriptions: list[Subscription] = []  # in creation order
        self._invoices: dict[str, Invoice] = {}
        self._denied: set[str] = set()

    def add_subscription(
        self,
        external_id: str,
        external_customer_id: str,
        *,
        plan_code: str = "litellm",
        plan_amount_cents: int = 0,
        status: str = "active",
        started_at: datetime | None = None,
        terminated_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A subscription (and its customer, the first time), as GET /subscriptions lists it.

        `started_at` defaults to the clock (pending ones have none); `terminated_at` too, for
        a terminated one. Like Lago, one active subscription per external id at a time.
        """
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"status {status!r} is not one of {SUBSCRIPTION_STATUSES}")
        if terminated_at is not None and status != "terminated":
            raise ValueError("only a terminated subscription has a terminated_at")
        if started_at is not None and status == "pending":
            raise ValueError("a pending subscription has not started")
        now = micros(self._clock())
        started = None if status == "pending" else micros(started_at or self._clock())
        ended = micros(terminated_at or self._clock()) if status == "terminated" else None
        with self._lock:
            if status == "active" and any(
                held.external_id == external_id and held.status == "active"
                for held in self._subscriptions
            ):  # Subscriptions::CreateService
                raise ValueError(f"Lago refuses a second active subscription {external_id!r}")
            customer = self._customers.get(external_customer_id)
            if customer is None:
                sequence = len(self._customers) + 1
                customer = Customer(random_uuid(), external_customer_id, sequence, now)
                self._customers[external_customer_id] = customer
            plan_id = random_uuid()
            subscription = Subscription(
                random_uuid(), external_id, customer, plan_id, plan_code, plan_amount_cents,
                status, now, started, ended,
            )  # fmt: skip
            self._subscriptions.append(subscription)
            return subscription_json(subscription, now)

    def add_invoice(
        self,
        external_subscription_id: str | Sequence[str],
        charges_from: datetime,
        charges_to: datetime,
        *,
        status: str = "finalized",
        invoice_type: str = "subscription",
        invoicing_reason: str = "subscription_periodic",
        issuing_date: date | None = None,
    ) -> dict[str, Any]:
        """An invoice billing [charges_from, charges_to] of each subscription named.

        `charges_to` is inclusive, as Lago stores it: the period's last microsecond (its
        `end_of_day`, e.g. 2026-10-31T23:59:59.999999Z, printed 23:59:59Z). Several ids put
        several subscriptions of one customer on one invoice, as Lago groups a billing day's;
        each names the subscription added last with that id. `issuing_date` defaults to the
        day after the period. Returns the invoice as GET /api/v1/invoices/{lago_id} shows it.
        """
        names = (
            [external_subscription_id]
            if isinstance(external_subscription_id, str)
            else list(external_subscription_id)
        )
        if status not in INVOICE_STATUSES:
            raise ValueError(f"status {status!r} is not one of {INVOICE_STATUSES}")
        if invoice_type not in INVOICE_TYPES or invoicing_reason not in INVOICING_REASONS:
            raise ValueError(f"invoice type {invoice_type!r} or reason {invoicing_reason!r}")
        start, end = micros(charges_from), micros(charges_to)
        if not names or start > end:
            raise ValueError("an invoice bills at least one subscription over a period")
        now = micros(self._clock())
        with self._lock:
            subscriptions = [self._latest(name) for name in names]
            customer = subscriptions[0].customer
            if any(
                subscription.customer.lago_id != customer.lago_id for subscription in subscriptions
            ):
                raise ValueError(f"subscriptions {names} belong to different customers")
            periods = tuple(
                BillingPeriod(subscription, start, end, invoicing_reason, random_uuid())
                for subscription in subscriptions
            )
            sequence = 1 + sum(
                held.customer.lago_id == customer.lago_id for held in self._invoices.values()
            )
            billing_day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=end + 1)
            invoice = Invoice(
                random_uuid(), customer, sequence, status, invoice_type,
                issuing_date or billing_day.date(), now, now,
                now if status == "voided" else None, periods,
            )  # fmt: skip
            self._invoices[invoice.lago_id] = invoice
            return invoice_json(self.organization, invoice, now, extended=True)

    def set_invoice_status(self, lago_id: str, status: str) -> dict[str, Any]:
        """Finalize, void, ... an invoice (any change: Lago's state machine is not enforced)."""
        if status not in INVOICE_STATUSES:
            raise ValueError(f"status {status!r} is not one of {INVOICE_STATUSES}")
        now = micros(self._clock())
        with self._lock:
            invoice = self._invoices.get(lago_id)
            if invoice is None:
                raise ValueError(f"no invoice {lago_id!r}: add_invoice first")
            voided = now if status == "voided" else None
            invoice = dataclasses.replace(invoice, status=status, updated_us=now, voided_us=voided)
            self._invoices[lago_id] = invoice
            return invoice_json(self.organization, invoice, now, extended=True)

    def deny_read(self, resource: str) -> None:
        """Take `resource`'s read permission from the API key: 403 on its routes."""
        if resource not in RESOURCES:
            raise ValueError(f"resource {resource!r} is not one of {RESOURCES}")
        with self._lock:
            self._denied.add(resource)

    def answer(self, route: Route, query: str, *, per_page_cap: int | None = None) -> Reply:
        """Lago's answer to an authenticated request that reached `route`."""
        resource, lago_id = route
        with self._lock:
            if resource in self._denied:  # Api::BaseController#authorize
                code = f"read_action_not_allowed_for_{resource}"
                return Reply(403, {"status": 403, "error": "Forbidden", "code": code})
            now = micros(self._clock())
            if lago_id is not None:
                invoice = self._invoices.get(lago_id.lower())  # uuid columns ignore case
                if invoice is None:
                    return not_found("invoice")
                return Reply(
                    200, {"invoice": invoice_json(self.organization, invoice, now, extended=True)}
                )
            params = rack_query(query)
            if resource == "subscription":
                return self._subscriptions_page(params, now, per_page_cap)
            return self._invoices_page(params, now, per_page_cap)

    def _latest(self, external_id: str) -> Subscription:
        for subscription in reversed(self._subscriptions):
            if subscription.external_id == external_id:
                return subscription
        raise ValueError(f"no subscription {external_id!r}: add_subscription first")

    def _subscriptions_page(self, params: Params, now: int, cap: int | None) -> Reply:
        """SubscriptionIndex: `status[]` (default active; any unknown one: no status filter)."""
        statuses = params.get("status")
        wanted = statuses if isinstance(statuses, list) and statuses else ["active"]
        by_status = all(status in SUBSCRIPTION_STATUSES for status in wanted)
        external_id, customer = (
            _scalar(params, "external_id"),
            _scalar(params, "external_customer_id"),
        )
        plan_code = _scalar(params, "plan_code")
        rows = [
            held
            for held in self._subscriptions
            if (not by_status or held.status in wanted)
            and external_id in (None, held.external_id)
            and customer in (None, held.customer.external_id)
            and plan_code in (None, held.plan_code)
        ]
        # subscription_at DESC NULLS LAST, created_at DESC, id ASC
        rows.sort(key=lambda held: held.lago_id)
        rows.sort(
            key=lambda held: (held.started_us or held.created_us, held.created_us), reverse=True
        )
        return _page("subscriptions", [subscription_json(row, now) for row in rows], params, cap)

    def _invoices_page(self, params: Params, now: int, cap: int | None) -> Reply:
        """InvoiceIndex: the customer, `status` or `statuses`, `invoice_type`."""
        customer = _scalar(params, "external_customer_id")
        customer = customer if customer is not None else _scalar(params, "customer_external_id")
        statuses = params.get("status", params.get("statuses"))
        if isinstance(statuses, str) and statuses and statuses not in INVOICE_STATUSES:
            return validation_errors({"status": [f"{_BAD_STATUS} or must be an array"]})
        if isinstance(statuses, list):
            wrong = {
                str(at): [_BAD_STATUS]
                for at, one in enumerate(statuses)
                if one not in INVOICE_STATUSES
            }
            if wrong:
                return validation_errors({"status": wrong})
        wanted = (
            [statuses] if isinstance(statuses, str) and statuses else statuses or INVOICE_STATUSES
        )
        types = params.get("invoice_type")  # `where(invoice_type:)`: an unknown one matches none
        types = [types] if isinstance(types, str) else types
        rows = [
            invoice
            for invoice in self._invoices.values()
            if customer in (None, invoice.customer.external_id)
            and invoice.status in wanted
            and (not types or invoice.invoice_type in types)
        ]
        # issuing_date DESC, created_at DESC, id ASC
        rows.sort(key=lambda invoice: invoice.lago_id)
        rows.sort(key=lambda invoice: (invoice.issuing_date, invoice.created_us), reverse=True)
        shown = [invoice_json(self.organization, row, now, extended=False) for row in rows]
        return _page("invoices", shown, params, cap)


def _scalar(params: Params, name: str) -> str | None:
    """A permitted scalar parameter: arrays are dropped."""
    value = params.get(name)
    return value if isinstance(value, str) else None


def _page(name: str, rows: list[dict[str, Any]], params: Params, cap: int | None) -> Reply:
    """Kaminari's page of `rows`, with Pagination#pagination_metadata."""
    page = max(ruby_to_i(_scalar(params, "page") or "1"), 1)
    limit = kaminari_limit(_scalar(params, "per_page"), cap)
    if limit == 0 and rows:  # total_pages divides by zero
        return INTERNAL_ERROR
    first = (page - 1) * limit
    return Reply(
        200, {name: rows[first : first + limit], "meta": pagination_meta(page, limit, len(rows))}
    )
