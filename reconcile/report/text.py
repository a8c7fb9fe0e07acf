"""The report as text: an aligned terminal table, GitHub markdown, and a short stderr summary."""

from __future__ import annotations

import re
from collections.abc import Sequence

from reconcile.report.display import (
    GAP_LABELS,
    GAP_NUMERIC,
    KEY_LABELS,
    KEY_NUMERIC,
    STATUS_ORDER,
    cents,
    customer_counts,
    customer_label,
    gap_cells,
    header_items,
    key_cells,
    lost_spend_total,
    percent,
    plain,
    plural,
    rollup_sentence,
    safe,
    status_counts,
    totals_cells,
    truncate,
    width,
    window,
)
from reconcile.results import Report, RollupState, Status

CUSTOMER_COLUMNS = 32
"""The widest a customer id gets in the table; the CSV, JSON and XLSX hold it whole."""

SUMMARY_EXCEPTIONS = 5


def _pad(text: str, columns: int, *, right: bool) -> str:
    fill = " " * max(columns - width(text), 0)
    return fill + text if right else text + fill


def _widths(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(width(cell) for cell in column) for column in zip(labels, *rows, strict=True)]


def _aligned(cells: Sequence[str], widths: Sequence[int], numeric: Sequence[bool]) -> str:
    padded = (
        _pad(cell, size, right=right)
        for cell, size, right in zip(cells, widths, numeric, strict=True)
    )
    return "  ".join(padded).rstrip()


def _counts_sentence(report: Report) -> str:
    lines = status_counts(report.lines)
    customers = customer_counts(report)
    return (
        f"{len(report.lines):,} lines: "
        + ", ".join(f"{lines[status]:,} {status.value}" for status in STATUS_ORDER)
        + f"; customers: {customers[Status.UNDER_BILLED]:,} under-billed, "
        f"{customers[Status.OVER_BILLED]:,} over-billed"
    )


def table(report: Report) -> str:
    """The report for a terminal: header block, key columns aligned, totals, gaps, notes."""
    items = header_items(report.header)
    label_width = max(len(label) for label, _ in items)
    out = ["Reconciliation report: LiteLLM spend vs Lago (amounts in USD)", ""]
    out += [f"{label:<{label_width}}  {value}" for label, value in items]
    out.append("")
    rows = [key_cells(line) for line in report.lines]
    for row in rows:
        row[0] = truncate(row[0], CUSTOMER_COLUMNS)
    totals = totals_cells(report)
    labels, numeric = KEY_LABELS, KEY_NUMERIC
    widths = _widths(labels, [*rows, totals])
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out += [_aligned(labels, widths, numeric), rule]
    previous: Status | None = None
    for line, row in zip(report.lines, rows, strict=True):
        if previous is not None and line.status is not previous:
            out.append(rule)  # under- and over-billing stay apart
        previous = line.status
        out.append(_aligned(row, widths, numeric))
    out += [rule.replace("-", "="), _aligned(totals, widths, numeric), "", _counts_sentence(report)]
    if report.rollup_gaps:
        gap_rows = [gap_cells(gap) for gap in report.rollup_gaps]
        for row in gap_rows:
            row[0] = truncate(row[0], CUSTOMER_COLUMNS)
        gap_widths = _widths(GAP_LABELS, gap_rows)
        out += [
            "",
            "Rollup gaps: LiteLLM's daily rollup holds more than its spend logs (not recoverable)",
            _aligned(GAP_LABELS, gap_widths, GAP_NUMERIC),
            "-" * (sum(gap_widths) + 2 * (len(gap_widths) - 1)),
        ]
        out += [_aligned(row, gap_widths, GAP_NUMERIC) for row in gap_rows]
    elif report.rollup_state is not RollupState.NOT_CHECKED:
        out += ["", f"Rollup gaps: {rollup_sentence(report)}"]
    if report.notes:
        out += ["", "Notes:"]
        out += [f"- {safe(note)}" for note in report.notes]
    return "\n".join(out) + "\n"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")


def _md(text: str) -> str:
    """Text that GitHub shows as is: no emphasis, links, HTML, math or broken table cells."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _md_table(labels: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    cells = [[_md(cell) for cell in row] for row in [labels, *rows]]
    widths = [max(size, 3) for size in _widths(cells[0], cells[1:])]

    def row_text(row: Sequence[str]) -> str:
        padded = (
            _pad(cell, size, right=right)
            for cell, size, right in zip(row, widths, numeric, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(
        "-" * (size - 1) + ":" if right else "-" * size
        for size, right in zip(widths, numeric, strict=True)
    )
    return "\n".join([row_text(cells[0]), rule + " |", *(row_text(row) for row in cells[1:])])


_SECTION_TITLES = {
    Status.UNDER_BILLED: "Under-billed",
    Status.OVER_BILLED: "Over-billed",
    Status.OK: "Within tolerance",
}


def markdown(report: Report) -> str:
    """The report as GitHub markdown: the header as a list, a section per status, gaps, notes."""
    out = ["# Reconciliation report: LiteLLM spend vs Lago", ""]
    out += [f"- **{label}:** {_md(value)}" for label, value in header_items(report.header)]
    out += ["", "Amounts in USD.", "", "## Totals", ""]
    labels, numeric = KEY_LABELS, KEY_NUMERIC
    out += [_md_table(labels[2:-1], [totals_cells(report)[2:-1]], numeric[2:-1]), ""]
    out += [_md(_counts_sentence(report)) + ".", ""]
    for status in STATUS_ORDER:
        lines = [line for line in report.lines if line.status is status]
        if not lines:
            continue
        out += [f"## {_SECTION_TITLES[status]} ({len(lines):,})", ""]
        out += [_md_table(labels, [key_cells(line) for line in lines], numeric), ""]
    if report.rollup_gaps:
        out += [
            "## Rollup gaps",
            "",
            "LiteLLM's daily rollup holds more than its spend logs: lost, not recoverable.",
            "",
            _md_table(GAP_LABELS, [gap_cells(gap) for gap in report.rollup_gaps], GAP_NUMERIC),
            "",
        ]
    elif report.rollup_state is not RollupState.NOT_CHECKED:
        sentence = rollup_sentence(report)
        out += ["## Rollup gaps", "", _md(sentence[:1].upper() + sentence[1:]) + ".", ""]
    if report.notes:
        out += ["## Notes", ""]
        out += [f"- {_md(safe(note))}" for note in report.notes]
        out.append("")
    return "\n".join(out)


def summary_text(report: Report) -> str:
    """A few lines for stderr after a run: totals, counts, the top exceptions, gaps, notes."""
    header, totals = report.header, report.totals
    customers = customer_counts(report)
    exceptions = report.exceptions
    items = [
        ("report", f"{window(header)} ({safe(header.timezone)}), by {safe(header.by)}"),
        ("LiteLLM", f"{cents(totals.spend)} USD billable, {totals.billable_requests:,} requests"),
        ("Lago", f"{cents(totals.lago_cost)} USD"),
        ("delta", f"{cents(totals.delta)} USD ({percent(totals.delta_percent)})"),
        (
            "missing",
            f"{totals.missing_events:,} events, {cents(totals.missing_spend)} USD; not "
            f"recoverable {totals.not_recoverable_events:,}, "
            f"{cents(totals.not_recoverable_spend)} USD",
        ),
        (
            "backfilled",
            f"{totals.backfilled_events:,} events, {cents(totals.backfilled_spend)} USD "
            f"({report.backfilled_by})",
        ),
        (
            "unexplained",
            f"{totals.unexplained_events:,} Lago events, {cents(totals.unexplained_cost)} USD",
        ),
        (
            "customers",
            f"{customers[Status.UNDER_BILLED]:,} under-billed, "
            f"{customers[Status.OVER_BILLED]:,} over-billed "
            f"({len(exceptions):,} of {len(report.lines):,} lines not ok; tolerance "
            f"{plain(header.tolerance)} USD)",
        ),
    ]
    if report.rollup_gaps:
        items.append(
            (
                "rollup gaps",
                f"{plural(len(report.rollup_gaps), 'customer-day')}, "
                f"{cents(lost_spend_total(report))} USD in LiteLLM's rollup and not in its "
                "spend logs (not recoverable)",
            )
        )
    elif report.rollup_state is not RollupState.NOT_CHECKED:
        items.append(("rollup", rollup_sentence(report)))
    out = [f"{label:<12}{value}" for label, value in items]
    if exceptions:
        labels = ("customer", "period", "status", "missing", "delta", "delta %")
        numeric = (False, False, False, True, True, True)
        rows = [
            [
                truncate(customer_label(line.customer), CUSTOMER_COLUMNS),
                safe(line.period),
                line.status.value,
                cents(line.missing_spend),
                cents(line.delta),
                percent(line.delta_percent),
            ]
            for line in exceptions[:SUMMARY_EXCEPTIONS]
        ]
        widths = _widths(labels, rows)
        out += ["", "top exceptions (USD):", "  " + _aligned(labels, widths, numeric)]
        out += ["  " + _aligned(row, widths, numeric) for row in rows]
        if len(exceptions) > SUMMARY_EXCEPTIONS:
            out.append(f"  and {len(exceptions) - SUMMARY_EXCEPTIONS:,} more")
    if report.notes:
        out.append("")
        out += [f"note: {safe(note)}" for note in report.notes]
    return "\n".join(out)
