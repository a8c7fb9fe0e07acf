"""`reconcile report --format`: every format the report is written in, and the stderr summary."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import BinaryIO

from reconcile.report.data import write_csv, write_json
from reconcile.report.html import write_html
from reconcile.report.text import markdown, summary_text, table
from reconcile.results import Report

__all__ = ["ReportFormat", "summary_text", "write_report"]


class ReportFormat(enum.StrEnum):
    """What `--format` accepts."""

    TABLE = "table"
    """Key columns aligned for a terminal, amounts in cents."""
    CSV = "csv"
    """One row per line, LINE_FIELDS, every digit: the stable data contract."""
    JSON = "json"
    """The whole report, every digit (report.schema.json)."""
    MD = "md"
    """GitHub markdown: the header as a list, a table per status."""
    XLSX = "xlsx"
    """An Excel workbook: Summary, Customers, Exceptions, Rollup gaps, Daily."""
    HTML = "html"
    """One self-contained page with a chart of the days."""

    @property
    def binary(self) -> bool:
        """Whether the output is not text (a terminal cannot show it)."""
        return self is ReportFormat.XLSX

    @property
    def suffix(self) -> str:
        """The usual file name suffix."""
        return ".txt" if self is ReportFormat.TABLE else f".{self.value}"


def _xlsx(report: Report, sink: BinaryIO) -> None:
    from reconcile.report.xlsx import write_xlsx  # noqa: PLC0415 (openpyxl: only for a workbook)

    write_xlsx(report, sink)


def _text(render: Callable[[Report], str]) -> Callable[[Report, BinaryIO], None]:
    def write(report: Report, sink: BinaryIO) -> None:
        sink.write(render(report).encode("utf-8"))

    return write


_WRITERS: dict[ReportFormat, Callable[[Report, BinaryIO], None]] = {
    ReportFormat.TABLE: _text(table),
    ReportFormat.CSV: write_csv,
    ReportFormat.JSON: write_json,
    ReportFormat.MD: _text(markdown),
    ReportFormat.XLSX: _xlsx,
    ReportFormat.HTML: write_html,
}


def write_report(report: Report, fmt: ReportFormat, sink: BinaryIO) -> None:
    """Write `report` to `sink` in `fmt`: UTF-8 text, or the workbook's bytes for xlsx."""
    _WRITERS[ReportFormat(fmt)](report, sink)
