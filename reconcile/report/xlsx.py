"""The report as an Excel workbook: Summary, Customers, Exceptions, Rollup gaps and Daily sheets."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import BinaryIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reconcile.report.display import (
    STATUS_ORDER,
    customer_counts,
    customer_label,
    header_items,
    lost_spend_total,
    rollup_sentence,
    safe,
    status_counts,
    width,
)
from reconcile.results import LINE_FIELDS, Line, Report, RollupGap, Status

INTEGER = "#,##0"
MONEY = "$#,##0.00"
PERCENT = "0.00%"  # a fraction, as formulas expect: -0.044445 shows as -4.44%
DATE = "yyyy-mm-dd"
MAX_CELL_TEXT = 32_767  # Excel's limit
MAX_COLUMN_WIDTH = 48

_BOLD = Font(bold=True)
_HEADING = PatternFill("solid", fgColor="DDE3EA")
_STATUS_FILLS = {
    Status.UNDER_BILLED: PatternFill("solid", fgColor="F8CBAD"),
    Status.OVER_BILLED: PatternFill("solid", fgColor="FFE699"),
}
_GAP_FIELDS = (
    "customer",
    "day",
    "rollup_requests",
    "rollup_spend",
    "spend_log_requests",
    "spend_log_spend",
    "lost_spend",
)
_DAILY_FIELDS = ("day", "litellm_spend", "lago_cost", "difference")


def _shown(value: object, number_format: str) -> str:
    """About what Excel shows for a value: what the column must be wide enough for."""
    if isinstance(value, float):
        return f"${value:,.2f}" if number_format == MONEY else f"{value:,.2f}%"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return "" if value is None else str(value)


def _put(sheet: Worksheet, row: int, column: int, value: object) -> int:
    """Write one cell with its number format; the terminal columns it shows as."""
    cell = sheet.cell(row=row, column=column)
    number_format = "General"
    if isinstance(value, Decimal):
        # Excel computes with doubles and 15 significant digits (openpyxl writes 16): a cell
        # holds the amount as a number to add up and chart, not exactly; CSV and JSON do.
        value, number_format = float(value), MONEY
    elif isinstance(value, int):
        number_format = INTEGER
    elif isinstance(value, dt.date):
        number_format = DATE
    if isinstance(value, str):
        cell.value = value[:MAX_CELL_TEXT]
        cell.data_type = "s"  # never a formula, even for a customer id starting with "="
    else:
        cell.value = value  # type: ignore[assignment]
        cell.number_format = number_format
    return width(_shown(value, number_format))


def _table(
    sheet: Worksheet,
    fields: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    frozen_columns: int = 1,
    totals: Sequence[object] | None = None,
) -> None:
    """A header row, the rows under an auto filter, frozen headers, then totals below."""
    widths = [len(name) for name in fields]
    for column, name in enumerate(fields, start=1):
        cell = sheet.cell(row=1, column=column, value=name)
        cell.font, cell.fill = _BOLD, _HEADING
    for row_number, row in enumerate(rows, start=2):
        for column, value in enumerate(row, start=1):
            widths[column - 1] = max(widths[column - 1], _put(sheet, row_number, column, value))
    last = get_column_letter(len(fields))
    sheet.auto_filter.ref = f"A1:{last}{len(rows) + 1}"
    sheet.freeze_panes = f"{get_column_letter(frozen_columns + 1)}2"
    if totals is not None:
        # One blank row apart, so sorting or filtering the lines leaves the totals alone.
        totals_row = len(rows) + 3
        for column, value in enumerate(totals, start=1):
            widths[column - 1] = max(widths[column - 1], _put(sheet, totals_row, column, value))
            sheet.cell(row=totals_row, column=column).font = _BOLD
    for column, size in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = min(size + 3, MAX_COLUMN_WIDTH)


def _line_row(line: Line) -> list[object]:
    row: list[object] = []
    for name in LINE_FIELDS:
        value = getattr(line, name)
        if name == "customer":
            value = customer_label(value)
        elif isinstance(value, tuple):
            value = " ".join(str(run) for run in value)
        elif isinstance(value, Status):
            value = value.value
        elif name == "delta_percent" and value is not None:
            value = value / 100  # the CSV's percent as the fraction a spreadsheet computes with
        row.append(value)
    return row


def _line_sheet(sheet: Worksheet, lines: Sequence[Line], totals: Line | None) -> None:
    total_row = None
    if totals is not None:
        total_row = [*_line_row(totals)[:-1], None]  # a status of sums would net out
        total_row[:2] = ["TOTAL", None]
    _table(
        sheet, LINE_FIELDS, [_line_row(line) for line in lines], frozen_columns=2, totals=total_row
    )
    status_column = LINE_FIELDS.index("status") + 1
    percent_column = LINE_FIELDS.index("delta_percent") + 1
    for row_number, line in enumerate(lines, start=2):
        sheet.cell(row=row_number, column=percent_column).number_format = PERCENT
        fill = _STATUS_FILLS.get(line.status)
        if fill is not None:
            sheet.cell(row=row_number, column=status_column).fill = fill
    if totals is not None:
        sheet.cell(row=len(lines) + 3, column=percent_column).number_format = PERCENT


def _gap_row(gap: RollupGap) -> list[object]:
    return [
        customer_label(gap.customer),
        gap.day,
        gap.rollup_requests,
        gap.rollup_spend,
        gap.spend_log_requests,
        gap.spend_log_spend,
        gap.lost_spend,
    ]


def _summary(sheet: Worksheet, report: Report) -> None:
    sheet.cell(
        row=1, column=1, value="Reconciliation report: LiteLLM spend vs Lago (USD)"
    ).font = Font(bold=True, size=14)
    rows: list[tuple[str, object]] = [
        (label, value) for label, value in header_items(report.header)
    ]
    rows.append(("", None))
    rows.append(("Totals", None))
    totals = _line_row(report.totals)
    rows += [
        (name, value)
        for name, value in zip(LINE_FIELDS, totals, strict=True)
        if name not in {"customer", "period", "status"}
    ]
    rows += [("", None), ("Lines by status", None)]
    rows += [(status.value, count) for status, count in status_counts(report.lines).items()]
    rows.append(("exceptions (not ok)", len(report.exceptions)))
    customers = customer_counts(report)
    rows += [(f"customers {status.value}", customers[status]) for status in STATUS_ORDER[:2]]
    rows += [
        ("rollup gaps", len(report.rollup_gaps)),
        ("lost spend", lost_spend_total(report)),
        ("rollup check", rollup_sentence(report)),
    ]
    if report.notes:
        rows += [("", None), ("Notes", None)]
        rows += [("", safe(note)) for note in report.notes]
    for row_number, (label, value) in enumerate(rows, start=3):
        sheet.cell(row=row_number, column=1, value=label).font = _BOLD
        _put(sheet, row_number, 2, value)
        sheet.cell(row=row_number, column=2).alignment = Alignment(horizontal="left")
        if label == "delta_percent":
            sheet.cell(row=row_number, column=2).number_format = PERCENT
    sheet.column_dimensions["A"].width = 30
    sheet.column_dimensions["B"].width = 80


def workbook(report: Report) -> Workbook:
    """The report as a workbook; money cells hold the amounts as numbers shown in dollars."""
    book = Workbook()
    summary = book.worksheets[0]  # a new workbook's one sheet
    summary.title = "Summary"
    _summary(summary, report)
    _line_sheet(book.create_sheet("Customers"), report.lines, report.totals)
    _line_sheet(book.create_sheet("Exceptions"), report.exceptions, None)
    gaps = book.create_sheet("Rollup gaps")
    _table(gaps, _GAP_FIELDS, [_gap_row(gap) for gap in report.rollup_gaps])
    if not report.rollup_gaps:
        # Below the empty table, as the totals are: "no rollup rows" is not "they agree".
        gaps.cell(row=3, column=1, value=rollup_sentence(report))
    _table(
        book.create_sheet("Daily"),
        _DAILY_FIELDS,
        [
            [day.day, day.litellm_spend, day.lago_cost, day.litellm_spend - day.lago_cost]
            for day in report.daily
        ],
    )
    header = report.header
    book.properties.title = (
        f"Reconciliation report {header.since:%Y-%m-%d} to {header.until:%Y-%m-%d}"
    )
    book.properties.creator = f"reconcile {header.version}"
    generated = header.generated_at.astimezone(dt.UTC).replace(tzinfo=None)
    book.properties.created = book.properties.modified = generated
    return book


def write_xlsx(report: Report, sink: BinaryIO) -> None:
    """The workbook's bytes, written to `sink` in one piece (a zip needs no seekable sink)."""
    buffer = io.BytesIO()
    workbook(report).save(buffer)
    sink.write(buffer.getvalue())
