"""Lago's customers, subscriptions and invoices as records, serialized as lago-api v1.51.0 does.

Copied from app/serializers/v1/{customer,subscription,invoice,fee}_serializer.rb and
invoices/billing_period_serializer.rb. One organization with its default billing entity
(numbering per customer, UTC, no grace period, net payment term 0), monthly calendar plans
billed in arrears, no taxes, coupons, credits, wallets, integrations or metadata: each
billing period of an invoice carries one subscription fee of the plan's amount.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from reconcile.lago_emulator.values import decimal_text, iso8601, micros

CURRENCY = "USD"
VERSION_NUMBER = 4  # invoices.version_number's default


@dataclasses.dataclass(frozen=True)
class Organization:
    """What invoices print of the organization and its default billing entity."""

    lago_id: str
    name: str = "Lago Emulator"
    slug: str = "lago-emulator"
    billing_entity_code: str = "lago_emulator"

    @property
    def prefix(self) -> str:
        """Organization#generate_document_number_prefix: three letters, four of the id."""
        return f"{self.name[:3].upper()}-{self.lago_id[-4:].upper()}"


@dataclasses.dataclass(frozen=True)
class Customer:
    lago_id: str
    external_id: str
    sequential_id: int
    created_us: int


@dataclasses.dataclass(frozen=True)
class Subscription:
    lago_id: str
    external_id: str
    customer: Customer
    plan_id: str
    plan_code: str
    plan_amount_cents: int
    status: str
    created_us: int
    started_us: int | None  # None while pending
    terminated_us: int | None


@dataclasses.dataclass(frozen=True)
class BillingPeriod:
    """An invoice_subscriptions row: the period billed; `charges_to_us` is inclusive."""

    subscription: Subscription
    charges_from_us: int
    charges_to_us: int  # e.g. 23:59:59.999999 (`end_of_day`), printed to the second
    invoicing_reason: str
    fee_id: str  # the subscription fee billed for it


@dataclasses.dataclass(frozen=True)
class Invoice:
    lago_id: str
    customer: Customer
    sequential_id: int
    status: str
    invoice_type: str
    issuing_date: date
    created_us: int
    updated_us: int
    voided_us: int | None
    periods: tuple[BillingPeriod, ...]

    @property
    def fees_amount_cents(self) -> int:
        return sum(period.subscription.plan_amount_cents for period in self.periods)


def _time(us: int | None) -> str | None:
    return None if us is None else iso8601(us)


def customer_json(org: Organization, customer: Customer, *, integrations: bool) -> dict[str, Any]:
    """V1::CustomerSerializer for a customer created with only its external id."""
    shown: dict[str, Any] = {
        "lago_id": customer.lago_id,
        "billing_entity_code": org.billing_entity_code,
        "external_id": customer.external_id,
        "account_type": "customer",
        **dict.fromkeys(("name", "firstname", "lastname", "customer_type")),
        "sequential_id": customer.sequential_id,
        "slug": f"{org.prefix}-{customer.sequential_id:03d}",
        "created_at": iso8601(customer.created_us),
        "updated_at": iso8601(customer.created_us),
        **dict.fromkeys(("country", "address_line1", "address_line2", "state", "zipcode")),
        **dict.fromkeys(("email", "city", "url", "phone", "logo_url", "legal_name")),
        "legal_number": None,
        "currency": CURRENCY,  # set by its first subscription
        "tax_identification_number": None,
        "timezone": None,
        "applicable_timezone": "UTC",
        "net_payment_term": None,
        "external_salesforce_id": None,
        "finalize_zero_amount_invoice": "inherit",
        "billing_configuration": {
            "invoice_grace_period": None,
            "payment_provider": None,
            "payment_provider_code": None,
            "document_locale": None,
            "subscription_invoice_issuing_date_anchor": None,
            "subscription_invoice_issuing_date_adjustment": None,
        },
        "shipping_address": dict.fromkeys(
            ("address_line1", "address_line2", "city", "zipcode", "state", "country")
        ),
        "skip_invoice_custom_sections": False,
        "metadata": [],
    }
    if integrations:
        shown["integration_customers"] = []
    return shown


def current_period(subscription: Subscription, now_us: int) -> tuple[int | None, int | None]:
    """DatesService#charges_(from|to)_datetime with current_usage, for a monthly calendar plan."""
    started = subscription.started_us
    if started is None:
        return None, None
    today = _day(max(now_us, started))
    first = micros(datetime(today.year, today.month, 1, tzinfo=UTC))
    following = datetime(today.year + today.month // 12, today.month % 12 + 1, 1, tzinfo=UTC)
    start, end = max(first, started), micros(following) - 1  # end_of_day: .999999
    terminated = subscription.terminated_us
    if subscription.status == "terminated" and terminated is not None and terminated <= end:
        end = terminated
    return start, max(end, started)


def subscription_json(subscription: Subscription, now_us: int) -> dict[str, Any]:
    """V1::SubscriptionSerializer without includes, as lists and invoices show it."""
    period_start, period_end = current_period(subscription, now_us)
    started = subscription.started_us
    return {
        "lago_id": subscription.lago_id,
        "external_id": subscription.external_id,
        "lago_customer_id": subscription.customer.lago_id,
        "external_customer_id": subscription.customer.external_id,
        "name": None,
        "plan_code": subscription.plan_code,
        "plan_amount_cents": subscription.plan_amount_cents,
        "plan_amount_currency": CURRENCY,
        "status": subscription.status,
        "billing_time": "calendar",
        "subscription_at": iso8601(started if started is not None else subscription.created_us),
        "started_at": None if started is None else iso8601(started, milliseconds=True),
        "trial_ended_at": None,
        "ending_at": None,
        "terminated_at": _time(subscription.terminated_us),
        "canceled_at": None,
        "created_at": iso8601(subscription.created_us),
        "previous_plan_code": None,
        "next_plan_code": None,
        "downgrade_plan_date": None,
        "current_billing_period_started_at": _time(period_start),
        "current_billing_period_ending_at": _time(period_end),
        "on_termination_credit_note": None,  # must be absent for plans paid in arrears
        "on_termination_invoice": "generate",
        "progressive_billing_disabled": False,
        "consolidate_invoice": True,
        "cancellation_reason": None,
        "activated_at": _time(started),
        "payment_method": {"payment_method_id": None, "payment_method_type": "provider"},
        "activation_rules": [],
    }


def billing_period_json(period: BillingPeriod) -> dict[str, Any]:
    """V1::Invoices::BillingPeriodSerializer: a plan in arrears bills all three on one period."""
    subscription = period.subscription
    start, end = iso8601(period.charges_from_us), iso8601(period.charges_to_us)
    return {
        "lago_subscription_id": subscription.lago_id,
        "external_subscription_id": subscription.external_id,
        "lago_plan_id": subscription.plan_id,
        "subscription_from_datetime": start,
        "subscription_to_datetime": end,
        "charges_from_datetime": start,
        "charges_to_datetime": end,
        "fixed_charges_from_datetime": start,
        "fixed_charges_to_datetime": end,
        "invoicing_reason": period.invoicing_reason,
    }


def fee_json(invoice: Invoice, period: BillingPeriod) -> dict[str, Any]:
    """V1::FeeSerializer on the subscription fee of one billing period."""
    subscription, customer = period.subscription, invoice.customer
    cents = subscription.plan_amount_cents
    return {
        "lago_id": period.fee_id,
        **dict.fromkeys(("lago_charge_id", "lago_charge_filter_id", "lago_fixed_charge_id")),
        "lago_invoice_id": invoice.lago_id,
        **dict.fromkeys(("lago_true_up_fee_id", "lago_true_up_parent_fee_id")),
        "lago_original_fee_id": None,
        "lago_subscription_id": subscription.lago_id,
        "external_subscription_id": subscription.external_id,
        "lago_customer_id": customer.lago_id,
        "external_customer_id": customer.external_id,
        "item": {
            "type": "subscription",
            "code": subscription.plan_code,
            "name": subscription.plan_code,  # the plan's name: its code here
            "description": None,
            "invoice_display_name": subscription.plan_code,
            "filters": None,
            "filter_invoice_display_name": None,
            "lago_item_id": subscription.lago_id,
            "item_type": "Subscription",
            "grouped_by": {},
        },
        "pay_in_advance": False,
        "invoiceable": True,
        "amount_cents": cents,
        "amount_currency": CURRENCY,
        "precise_amount": cents / 100,  # Float#fdiv: a JSON number, not a string
        "precise_total_amount": cents / 100,
        "taxes_amount_cents": 0,
        "taxes_precise_amount": 0.0,
        "taxes_rate": 0.0,
        "total_aggregated_units": None,  # only charges aggregate units
        "total_amount_cents": cents,
        "total_amount_currency": CURRENCY,
        "units": "1.0",  # BigDecimal: a string
        "description": None,
        "precise_unit_amount": decimal_text(Decimal(cents) / 100),
        "precise_coupons_amount_cents": "0.0",
        "sub_total_excluding_taxes_amount_cents": cents,
        "sub_total_excluding_taxes_precise_amount_cents": decimal_text(Decimal(cents)),
        "events_count": None,
        "payment_status": "pending",
        "created_at": iso8601(invoice.created_us),
        **dict.fromkeys(("succeeded_at", "failed_at", "refunded_at")),
        "amount_details": {"plan_amount_cents": cents},
        "self_billed": False,
        "pricing_unit_details": None,
        "presentation_breakdowns": [],
        # Fee#date_boundaries: jsonb times read back by DateTime#iso8601, so "+00:00".
        "from_date": f"{iso8601(period.charges_from_us)[:-1]}+00:00",
        "to_date": f"{iso8601(period.charges_to_us)[:-1]}+00:00",
    }


def invoice_json(
    org: Organization, invoice: Invoice, now_us: int, *, extended: bool
) -> dict[str, Any]:
    """V1::InvoiceSerializer: a list's includes, or (`extended`) GET /invoices/{id}'s."""
    total, number = invoice.fees_amount_cents, f"{org.prefix}-DRAFT"
    if invoice.status != "draft":
        number = f"{org.prefix}-{invoice.customer.sequential_id:03d}-{invoice.sequential_id:03d}"
    shown: dict[str, Any] = {
        "lago_id": invoice.lago_id,
        "billing_entity_code": org.billing_entity_code,
        "sequential_id": invoice.sequential_id,
        "number": number,
        "purchase_order_number": None,
        "issuing_date": invoice.issuing_date.isoformat(),
        "payment_due_date": invoice.issuing_date.isoformat(),
        "net_payment_term": 0,
        "invoice_type": invoice.invoice_type,
        "status": invoice.status,
        "payment_status": "pending" if total else "succeeded",
        "payment_dispute_lost_at": None,
        "payment_overdue": False,
        "currency": CURRENCY,
        "fees_amount_cents": total,
        "taxes_amount_cents": 0,
        "progressive_billing_credit_amount_cents": 0,
        "coupons_amount_cents": 0,
        "credit_notes_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": total,
        "sub_total_including_taxes_amount_cents": total,
        "total_amount_cents": total,
        "total_due_amount_cents": 0 if invoice.status == "voided" else total,
        "total_paid_amount_cents": 0,
        "total_offsetted_credit_note_amount_cents": 0,
        "prepaid_credit_amount_cents": 0,
        **dict.fromkeys(
            ("prepaid_granted_credit_amount_cents", "prepaid_purchased_credit_amount_cents")
        ),
        "file_url": None,  # no PDF is generated here
        "xml_url": None,
        "web_url": (
            f"https://app.getlago.com/{org.slug}/customer/{invoice.customer.lago_id}"
            f"/invoice/{invoice.lago_id}/overview"
        ),
        "version_number": VERSION_NUMBER,
        "self_billed": False,
        "created_at": iso8601(invoice.created_us),
        "updated_at": iso8601(invoice.updated_us),
        "voided_at": _time(invoice.voided_us),
        "customer": customer_json(org, invoice.customer, integrations=True),
    }
    if extended:
        shown["subscriptions"] = [
            subscription_json(subscription, now_us) for subscription in _subscriptions(invoice)
        ]
        shown["billing_periods"] = [billing_period_json(period) for period in invoice.periods]
        shown["fees"] = [fee_json(invoice, period) for period in invoice.periods]
        shown["credits"] = []
    shown["metadata"] = []
    shown["applied_taxes"] = []
    if extended:
        shown["error_details"] = []
        shown["applied_invoice_custom_sections"] = []
    return shown


def _subscriptions(invoice: Invoice) -> list[Subscription]:
    """Invoice#sorted_invoice_subscriptions' subscriptions, each once."""
    seen: dict[str, Subscription] = {}
    for period in invoice.periods:
        seen.setdefault(period.subscription.lago_id, period.subscription)
    return list(seen.values())


def _day(us: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).date()
