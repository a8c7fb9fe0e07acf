"""Which periods of a Lago subscription are invoiced for good: its late usage is never billed.

Lago bills a subscription's usage on the invoice of its period. Until that invoice is
finalized (a draft, during the grace period) it is computed again as events arrive; after,
an event of the period is stored but never billed. Read from lago-api v1.51.0:
- A subscription is listed with `GET /api/v1/subscriptions?external_id=...&status[]=...`
  (the `external_id` filter exists since v1.49; older versions ignore it, so every page is
  read and filtered here). `GET /subscriptions/{external_id}` is not used: it finds only the
  active one unless told a status, and its route cuts an id at its first dot.
- Several subscriptions may share an external id: a plan change terminates one and starts
  another under the same id, and a terminated id may be reused, even by another customer.
- `GET /api/v1/invoices?external_customer_id=...` lists invoices without their subscriptions
  or fees, so each one of a wanted status is read with `GET /api/v1/invoices/{lago_id}`,
  whose `billing_periods` (since v1.19) give each subscription's charges period.
- A period is closed by a `subscription` invoice only (progressive-billing invoices are
  deducted from the period's final invoice), and only when it billed charges:
  charges_from_datetime < charges_to_datetime (Invoices::CalculateFeesService).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from reconcile.errors import ConfigError, LagoError
from reconcile.lago.answers import json_body
from reconcile.lago.client import LagoClient

PER_PAGE = 100  # Lago's own default page
SUBSCRIPTION_STATUSES = ("active", "pending", "terminated", "canceled", "incomplete")
FINALIZED: frozenset[str] = frozenset({"finalized"})
# Statuses whose fees Lago never computes again: voided invoices keep their periods (the
# recurring billing skips a period that has any invoice), and pending or failed ones only
# wait for taxes. Pass it as `statuses` for "can no longer be billed" in the strict sense.
NEVER_RECOMPUTED: frozenset[str] = frozenset({"finalized", "voided", "pending", "failed"})
_USAGE_REASONS = frozenset(
    {"subscription_starting", "subscription_periodic", "subscription_terminating"}
)


class Period(NamedTuple):
    """The event timestamps one invoice billed for a subscription: [start, end), aware UTC.

    Lago bills an event when charges_from_datetime <= timestamp <= charges_to_datetime, where
    charges_to_datetime is stored to the microsecond (the period's last one: 23:59:59.999999
    in the customer's time zone) but printed to the second. So `end` is that second plus one:
    the half-open period holds exactly what Lago's inclusive one does. A tuple, so it unpacks
    as (start, end).
    """

    start: dt.datetime
    end: dt.datetime

    def covers(self, instant: dt.datetime) -> bool:
        """Whether an event at `instant` (aware) falls in this period."""
        return self.start <= instant < self.end


def subscriptions(client: LagoClient, external_id: str) -> list[dict[str, Any]]:
    """Every subscription Lago holds under `external_id`, whatever its status, as Lago shows it."""
    params = {"external_id": external_id, "status[]": SUBSCRIPTION_STATUSES}
    listed = _listing(client, "/api/v1/subscriptions", "subscriptions", params)
    return [held for held in listed if held.get("external_id") == external_id]


def subscription_ids(client: LagoClient) -> set[str]:
    """The external id of every subscription Lago holds, whatever its status: one listing."""
    params = {"status[]": SUBSCRIPTION_STATUSES}
    listed = _listing(client, "/api/v1/subscriptions", "subscriptions", params)
    return {str(held["external_id"]) for held in listed if held.get("external_id") is not None}


def finalized_periods(
    client: LagoClient,
    external_subscription_id: str,
    *,
    statuses: Collection[str] = FINALIZED,
) -> list[Period] | None:
    """The periods of the subscription already on an invoice of `statuses`, sorted, each once.

    None when Lago has no subscription with this id under any status: its events are
    stored but never billed. A draft invoice closes nothing: Lago computes it again.
    """
    held = subscriptions(client, external_subscription_id)
    if not held:
        return None
    customers = sorted(
        {one["external_customer_id"] for one in held if one.get("external_customer_id")}
    )
    wanted = sorted(statuses)
    found: set[Period] = set()
    for customer in customers:
        params = {
            "external_customer_id": customer,
            "statuses[]": wanted,
            "invoice_type": "subscription",
        }
        listed = _listing(client, "/api/v1/invoices", "invoices", params)
        # Filtered here too: a Lago that ignores a filter still answers right.
        ids = [
            str(invoice.get("lago_id"))
            for invoice in listed
            if invoice.get("status") in statuses and invoice.get("invoice_type") == "subscription"
        ]
        with concurrent.futures.ThreadPoolExecutor(max(client.concurrency, 1)) as pool:
            for invoice in pool.map(lambda lago_id: _invoice(client, lago_id), ids):
                found.update(_charged(invoice, external_subscription_id))
    return sorted(found)


def _listing(
    client: LagoClient, path: str, key: str, params: Mapping[str, str | Sequence[str]]
) -> Iterator[dict[str, Any]]:
    """Every item of a Lago listing, following `meta.next_page`."""
    page = 1
    while True:
        query = {**params, "page": str(page), "per_page": str(PER_PAGE)}
        body = _checked(client, client.get(path, query, accept=(403, 404)), path)
        items = body.get(key)
        meta = body.get("meta")
        if not isinstance(items, list) or not isinstance(meta, dict):
            raise LagoError(
                f"Lago at {client.base_url} answered GET {path} without {key!r} and 'meta' "
                f"({str(body)[:200]}): is LAGO_API_BASE Lago's API?"
            )
        yield from (item for item in items if isinstance(item, dict))
        following = meta.get("next_page")
        if following is None:
            return
        if not isinstance(following, int) or following <= page:
            raise LagoError(f"Lago's GET {path} page {page} points to page {following!r} next")
        page = following


def _invoice(client: LagoClient, lago_id: str) -> dict[str, Any]:
    """One invoice with its billing periods."""
    path = f"/api/v1/invoices/{quote(lago_id, safe='')}"
    invoice = _checked(client, client.get(path, accept=(403, 404)), path).get("invoice")
    if not isinstance(invoice, dict):
        raise LagoError(f"Lago answered GET {path} without an invoice: {str(invoice)[:200]}")
    if not isinstance(invoice.get("billing_periods"), list):
        raise LagoError(
            f"Lago's invoice {invoice.get('number')} shows no billing_periods: Lago shows them "
            "since v1.19; upgrade Lago to read which periods are invoiced"
        )
    return invoice


def _checked(client: LagoClient, response: httpx.Response, path: str) -> dict[str, Any]:
    """The JSON body of a successful answer; 403 and 404 explained."""
    body = json_body(response)
    if response.status_code == 403:
        raise ConfigError(
            f"Lago at {client.base_url} refused GET {path} (HTTP 403 {body.get('code')}): give "
            "the API key read permission on subscriptions and invoices (Lago > Developers > "
            "API keys), or use a key that has it"
        )
    if response.status_code == 404 and body.get("code") == "invoice_not_found":
        raise LagoError(
            f"Lago listed invoice {path.rsplit('/', 1)[1]} but then found no such invoice "
            "(deleted meanwhile?): run again"
        )
    if response.status_code == 404:
        raise ConfigError(
            f"{client.base_url} has no Lago API at {path} (HTTP 404): check LAGO_API_BASE, "
            "the root URL of Lago's API (e.g. http://localhost:3000)"
        )
    return body


def _charged(invoice: Mapping[str, Any], external_id: str) -> Iterator[Period]:
    """The periods whose usage `invoice` billed for the subscription `external_id`."""
    for period in invoice["billing_periods"]:
        if not isinstance(period, dict) or period.get("external_subscription_id") != external_id:
            continue  # another subscription of the same customer
        if period.get("invoicing_reason") not in _USAGE_REASONS:
            continue  # in-advance or progressive billing: the period stays open
        start = _instant(invoice, period, "charges_from_datetime")
        last = _instant(invoice, period, "charges_to_datetime")
        if start is not None and last is not None and start < last:
            yield Period(start, last.replace(microsecond=0) + dt.timedelta(seconds=1))


def _instant(
    invoice: Mapping[str, Any], period: Mapping[str, Any], name: str
) -> dt.datetime | None:
    """A billing period's time, aware UTC; None when Lago gives none."""
    text = period.get(name)
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise LagoError(
            f"Lago's invoice {invoice.get('number')} gives {name}={text!r}, not an ISO 8601 "
            "time with a zone: is LAGO_API_BASE Lago's API?"
        )
    return moment.astimezone(dt.UTC)
