"""Plain-text summaries for people reading stderr: aligned, with thousands separators."""

from __future__ import annotations

from decimal import Decimal

from reconcile.attribute import CLASS_ORDER, RowClass
from reconcile.commands import EventsSummary
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
