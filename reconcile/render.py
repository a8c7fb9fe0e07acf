"""Plain-text summaries for people reading stderr: aligned columns, exact amounts."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from reconcile.attribute import CLASS_ORDER, RowClass
from reconcile.money import tidy
from reconcile.report.display import customer_label, safe, truncate, width
from reconcile.results import EventsSummary, Plan, Report, RunSummary
from reconcile.transaction_id import IdBasis

_CLASS_LABELS = {
    RowClass.BILLABLE: "billable",
    RowClass.UNATTRIBUTABLE: "unattributable (no charge-by id)",
    RowClass.FAILED: "failed (not billed by LiteLLM)",
    RowClass.INVALID_COST: "invalid cost (NaN or infinite)",
    RowClass.NEGATIVE_COST: "negative cost (never sent)",
}

Cell = str | int | Decimal | None
WIDTH = 100  # terminal columns every table and paragraph fits in


def money(amount: Decimal, scale: int = 6) -> str:
    """Exact USD with thousands separators and at least `scale` decimals: every digit shown."""
    text = format(tidy(amount), ",f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(scale, '0')}" if scale or fraction else whole


def table(rows: Sequence[Sequence[Cell]], *, indent: str = "  ", scale: int = 6) -> list[str]:
    """Rows of cells as aligned lines: the first column left, the others right.

    Columns are two spaces apart at least (a wide number never runs into its neighbour);
    amounts (Decimal) line up on their decimal point, with at least `scale` decimals and all
    their digits; None leaves a cell empty. Widths are
    terminal columns, so CJK and emoji ids line up as they do in the report.
    """
    scale = max(
        [scale, *(_scale(cell) for row in rows for cell in row if isinstance(cell, Decimal))]
    )
    texts = [[_text(cell, scale) for cell in row] for row in rows]
    columns = max(len(row) for row in texts) if texts else 0
    widths = [
        max((width(row[i]) for row in texts if i < len(row)), default=0) for i in range(columns)
    ]
    lines = []
    for row in texts:
        cells = [_pad(row[0], widths[0], left=True)] + [
            _pad(cell, widths[index + 1], left=False) for index, cell in enumerate(row[1:])
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _pad(text: str, columns: int, *, left: bool) -> str:
    fill = " " * (columns - width(text))
    return text + fill if left else fill + text


def plan_lines(plan: Plan, *, top: int = 20) -> list[str]:
    """The events a backfill is about to send: the `top` customers by spend, the rest, the total.

    Customers are shown as the report shows them (control characters escaped, cut to 40
    terminal columns); the last rows always add up to every event of the plan.
    """
    by_spend = plan.by_customer.sort_values(["spend", "subscription"], ascending=[False, True])
    rows: list[list[Cell]] = [["to send, per customer", "events", "spend (USD)"]]
    rows += [
        [truncate(safe(str(subscription)), 40), int(count), Decimal(spend)]
        for subscription, count, spend in zip(
            by_spend["subscription"][:top], by_spend["events"][:top], by_spend["spend"][:top],
            strict=True,
        )
    ]  # fmt: skip
    rest = by_spend.iloc[top:]
    if len(rest):
        rows.append(
            [
                f"… and {len(rest):,} more customer{'s' if len(rest) > 1 else ''}",
                int(rest["events"].sum()),
                sum(rest["spend"], Decimal(0)),
            ]
        )
    customers = len(by_spend)
    rows.append(
        [
            f"total ({customers:,} customer{'s' if customers != 1 else ''})",
            plan.count,
            plan.spend,
        ]
    )
    return table(rows)


def _scale(amount: Decimal) -> int:
    exponent = tidy(amount).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _text(cell: Cell, scale: int) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Decimal):
        return money(cell, scale)
    if isinstance(cell, int):
        return f"{cell:,}"
    return cell


def events_summary(summary: EventsSummary) -> str:
    """What `reconcile events` read, classified, and wrote."""
    tally = summary.tally
    lines = [
        f'window     {summary.window} on "startTime" (UTC, since included, until excluded)',
        f"source     {summary.source}",
        f"charge-by  {summary.charge_by.value} (column {summary.charge_by.column})"
        f"   event code  {summary.code}",
        "",
    ]
    rows: list[list[Cell]] = [["rows", "count", "spend (USD)", None]]
    for member in CLASS_ORDER:
        part = tally[member]
        note = None
        if member is RowClass.FAILED and part.rows_with_spend:
            note = f"{part.rows_with_spend:,} with spend"
        rows.append([_CLASS_LABELS[member], part.rows, part.spend, note])
    rows.append(["all rows read", tally.rows, tally.spend, None])
    lines += table(rows)
    basis = summary.id_basis
    lines += [
        "",
        f"wrote {summary.events:,} events in {summary.seconds:.1f} s; transaction ids from "
        f"litellm_call_id: {basis.get(IdBasis.CALL_ID, 0):,}, from request_id: "
        f"{basis.get(IdBasis.REQUEST_ID, 0):,} (no call id) + "
        f"{basis.get(IdBasis.REQUEST_ID_SHARED_CALL, 0):,} (call id shared within one ms)",
    ]
    return "\n".join(lines)


def _share(summary: RunSummary) -> list[str]:
    """For a run in parts: this worker's share, and whose figures follow."""
    done, total, finished_here = summary.parts
    if total == 1:
        return []
    whose = (
        "the run is done: the figures are the whole run's"
        if finished_here
        else "the figures are this worker's parts'; the worker that ends the run has the whole's"
    )
    return [f"parts      {done} of {total} done by this worker; {whose}"]


def run_summary(summary: RunSummary, *, lago: str) -> str:
    """What `reconcile run` or `backfill` found, sent and left, for stderr."""
    settings = summary.settings
    lines = [
        f'window     {settings.window} on "startTime" (UTC)   {settings.mode} {summary.run_id}',
        f"charge-by  {settings.charge_by.value}   event code  {settings.code}   Lago  {lago}",
        *_share(summary),
        "",
    ]
    rows: list[list[Cell]] = [["spend-log rows in the window", "count", "spend (USD)"]]
    rows += [
        [_CLASS_LABELS[member], summary.tally[member].rows, summary.tally[member].spend]
        for member in CLASS_ORDER
    ]
    rows.append(["", None, None])
    rows += [
        ["Lago events listed (window and margins)", summary.listed, None],
        ["billable rows billed by our events", summary.matched_by_id, None],
        ["billable rows billed by the callback", summary.matched_by_fingerprint, None],
        ["missing from Lago", summary.missing, summary.missing_spend],
        ["  sent now", summary.sent, summary.sent_spend],
        ["  already in Lago when sent", summary.already_in_lago, None],
        ["  held back: too recent", summary.too_recent, summary.too_recent_spend],
        ["  left unsent", summary.left_unsent, None],
        [
            "unexplained Lago events in the window",
            sum(count for count, _ in summary.unexplained.values()),
            sum((cost for _, cost in summary.unexplained.values()), Decimal(0)),
        ],
    ]
    rows += [
        ["  " + reason, count, cost]
        for reason, (count, cost) in sorted(summary.unexplained.items())
    ]
    lines += table(rows)
    if summary.settings.dry_run and summary.plan is not None and summary.plan.count:
        lines += ["", *plan_lines(summary.plan)]
    lines += _warnings(summary)
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in summary.seconds.items())
    timed = f" Time: {timings}." if timings else ""
    lines += ["", textwrap.fill(f"Lago requests: {summary.lago_requests:,}.{timed}", WIDTH)]
    return "\n".join(lines)


def _warnings(summary: RunSummary) -> list[str]:
    notes = []  # negative costs: a row of the table above, and a note of the report below
    if summary.too_recent:
        later = (
            "the next nightly run takes them"
            if summary.settings.mode == "run"
            else "run the same backfill again later"
        )
        notes.append(
            f"{summary.too_recent:,} missing event(s) held back: their requests ended less "
            "than --max-delay before now minus --settle, and LiteLLM's callback may still "
            f"deliver them; {later}."
        )
    if summary.before_this_month:
        notes.append(
            f"{summary.before_this_month:,} missing event(s) date from before this month: where "
            "the invoice of their billing period is already finalized, Lago stores them but "
            "will not bill them."
        )
    return ["", *(textwrap.fill(note, WIDTH) for note in notes)] if notes else []


def report_top(report: Report, *, top: int = 10) -> list[str]:
    """A report's customers in 100 columns: the `top` by spend, the rest summed, the total.

    Amounts to the cent (the report itself keeps every digit); one line per customer and
    all its periods.
    """
    by_customer: dict[str, list[Decimal]] = {}
    statuses: dict[str, set[str]] = {}
    for line in report.lines:
        sums = by_customer.setdefault(line.customer, [Decimal(0)] * 5)
        values: tuple[Decimal, ...] = (
            Decimal(line.requests),
            line.spend,
            line.lago_cost,
            line.missing_spend,
            line.backfilled_spend,
        )
        by_customer[line.customer] = [a + b for a, b in zip(sums, values, strict=True)]
        statuses.setdefault(line.customer, set()).add(line.status.value)
    ranked = sorted(by_customer.items(), key=lambda item: (-item[1][1], item[0]))
    header: list[Cell] = [
        "customer",
        "requests",
        "spend",
        "Lago",
        "missing",
        "backfilled",
        "status",
    ]
    rows: list[list[Cell]] = [header]
    for customer, sums in ranked[:top]:
        status = "ok" if statuses[customer] == {"ok"} else "not ok"
        rows.append([truncate(customer_label(customer), 32), *_cents_row(sums), status])
    rest = ranked[top:]
    if rest:
        summed = [sum((sums[i] for _, sums in rest), Decimal(0)) for i in range(5)]
        rows.append([f"… and {len(rest):,} more", *_cents_row(summed), None])
    total = [sum((sums[i] for _, sums in ranked), Decimal(0)) for i in range(5)]
    rows.append([f"total ({len(ranked):,} customers)", *_cents_row(total), None])
    return table(rows, scale=2)


def _cents_row(sums: Sequence[Decimal]) -> list[Cell]:
    cent = Decimal("0.01")
    return [int(sums[0]), *(amount.quantize(cent, ROUND_HALF_UP) for amount in sums[1:])]
