"""Plain-text summaries for people reading stderr: aligned, with thousands separators."""

from __future__ import annotations

from decimal import Decimal

from reconcile.attribute import CLASS_ORDER, RowClass
from reconcile.commands import EventsSummary
from reconcile.job import RunSummary
from reconcile.transaction_id import IdBasis

_CLASS_LABELS = {
    RowClass.BILLABLE: "billable",
    RowClass.UNATTRIBUTABLE: "unattributable (no charge-by id)",
    RowClass.FAILED: "failed (not billed by LiteLLM)",
    RowClass.INVALID_COST: "invalid cost (NaN or infinite)",
}


def money(amount: Decimal) -> str:
    """USD with six decimals: LiteLLM costs are often fractions of a cent."""
    return f"{amount:,.6f}"


def events_summary(summary: EventsSummary) -> str:
    """What `reconcile events` read, classified, and wrote."""
    tally = summary.tally
    lines = [
        f'window     {summary.window} on "startTime" (UTC, since included, until excluded)',
        f"source     {summary.source}",
        f"charge-by  {summary.charge_by.value} (column {summary.charge_by.column})"
        f"   event code  {summary.code}",
        "",
        f"  {'rows':<34}{'count':>12}{'spend (USD)':>20}",
    ]
    for member in CLASS_ORDER:
        total = tally[member]
        note = ""
        if member is RowClass.FAILED and total.rows_with_spend:
            note = f"   {total.rows_with_spend:,} with spend"
        lines.append(
            f"  {_CLASS_LABELS[member]:<34}{total.rows:>12,}{money(total.spend):>20}{note}"
        )
    lines.append(f"  {'all rows read':<34}{tally.rows:>12,}{money(tally.spend):>20}")
    lines.append("")
    basis = summary.id_basis
    lines.append(
        f"wrote {summary.events:,} events in {summary.seconds:.1f} s; transaction ids from "
        f"litellm_call_id: {basis.get(IdBasis.CALL_ID, 0):,}, from request_id: "
        f"{basis.get(IdBasis.REQUEST_ID, 0):,} (no call id) + "
        f"{basis.get(IdBasis.REQUEST_ID_SHARED_CALL, 0):,} (call id shared within one ms)"
    )
    return "\n".join(lines)


def run_summary(summary: RunSummary, *, lago: str) -> str:
    """What `reconcile run` or `backfill` found, sent and left, for stderr."""
    settings = summary.settings
    lines = [
        f'window     {settings.window} on "startTime" (UTC)   {settings.mode} {summary.run_id}',
        f"charge-by  {settings.charge_by.value}   event code  {settings.code}   Lago  {lago}",
        "",
        f"  {'spend-log rows in the window':<40}{'count':>12}{'spend (USD)':>20}",
    ]
    for member in CLASS_ORDER:
        total = summary.tally[member]
        lines.append(f"  {_CLASS_LABELS[member]:<40}{total.rows:>12,}{money(total.spend):>20}")
    plan = summary.plan
    sent_spend = plan.spend if plan is not None and summary.sent else Decimal(0)
    lines += [
        "",
        f"  {'Lago events listed (window and margins)':<40}{summary.listed:>12,}",
        f"  {'billable rows billed by our events':<40}{summary.matched_by_id:>12,}",
        f"  {'billable rows billed by the callback':<40}{summary.matched_by_fingerprint:>12,}",
        f"  {'missing from Lago':<40}{summary.missing:>12,}{money(summary.missing_spend):>20}",
        f"  {'  sent now':<40}{summary.sent:>12,}{money(sent_spend):>20}",
        f"  {'  already in Lago when sent':<40}{summary.already_in_lago:>12,}",
        f"  {'  left unsent':<40}{summary.unsent:>12,}",
    ]
    unexplained = sum(count for count, _ in summary.unexplained.values())
    lines.append(f"  {'unexplained Lago events in the window':<40}{unexplained:>12,}")
    for reason, (count, cost) in sorted(summary.unexplained.items()):
        lines.append(f"  {'  ' + reason:<40}{count:>12,}{money(cost):>20}")
    if plan is not None and summary.unsent and len(plan.by_customer):
        lines += ["", f"  {'to send, per customer':<40}{'events':>12}{'spend (USD)':>20}"]
        top = plan.by_customer.sort_values("spend", ascending=False).head(20)
        for subscription, count, spend in zip(
            top["subscription"], top["events"], top["spend"], strict=True
        ):
            lines.append(f"  {str(subscription)[:40]:<40}{count:>12,}{money(spend):>20}")
    if summary.before_this_month:
        lines += [
            "",
            f"{summary.before_this_month:,} missing event(s) date from before this month: where "
            "the invoice of their billing period is already finalized, Lago stores them but "
            "will not bill them.",
        ]
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in summary.seconds.items())
    lines += ["", f"Lago requests: {summary.lago_requests:,}. Time: {timings}."]
    return "\n".join(lines)
