"""The report as data, exact to the last digit: CSV (one row per line) and JSON (everything)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal
from importlib import resources
from typing import Any, BinaryIO

from reconcile.report.display import lost_spend_total, plain, rollup_sentence, status_counts
from reconcile.results import LINE_FIELDS, DailySpend, Header, Line, Report, RollupGap

SCHEMA_FILE = "report.schema.json"
"""The JSON Schema of `write_json`'s output, shipped beside this module."""


def csv_value(value: object) -> str:
    """A line's field as CSV text: Decimals in plain digits, runs space-separated, None empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    return str(value)  # str, int, and Status (a StrEnum: its value)


def csv_rows(report: Report) -> list[list[str]]:
    """The CSV's rows: one per line in the report's order, then TOTAL; no header."""
    totals = dataclasses.replace(report.totals, customer="TOTAL", period="")
    return [
        [csv_value(getattr(line, name)) for name in LINE_FIELDS] for line in [*report.lines, totals]
    ]


def write_csv(report: Report, sink: BinaryIO) -> None:
    """The lines as CSV (RFC 4180, UTF-8): a row of LINE_FIELDS, a row per line, the totals."""
    # Values are written as they are, even those starting with "=": the CSV is a data contract
    # that must equal the report; the XLSX is the format made for opening in a spreadsheet.
    text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text)
        writer.writerow(LINE_FIELDS)
        writer.writerows(csv_rows(report))
        text.flush()
    finally:
        text.detach()  # the sink is the caller's to close


def _money(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def _line(line: Line) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in LINE_FIELDS:
        value = getattr(line, name)
        if isinstance(value, Decimal) or (name == "delta_percent" and value is None):
            out[name] = _money(value)
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = str(value) if isinstance(value, str) else value
    return out


def _header(header: Header) -> dict[str, Any]:
    return {
        "since": header.since.isoformat(),
        "until": header.until.isoformat(),
        "timezone": header.timezone,
        "by": header.by,
        "charge_by": header.charge_by,
        "code": header.code,
        "generated_at": header.generated_at.isoformat(),
        "version": header.version,
        "source": header.source,
        "lago": header.lago,
        "customers": list(header.customers),
        "tolerance": plain(header.tolerance),
    }


def _daily(day: DailySpend) -> dict[str, Any]:
    return {
        "day": day.day.isoformat(),
        "litellm_spend": plain(day.litellm_spend),
        "lago_cost": plain(day.lago_cost),
    }


def _gap(gap: RollupGap) -> dict[str, Any]:
    return {
        "customer": gap.customer,
        "day": gap.day.isoformat(),
        "rollup_requests": gap.rollup_requests,
        "rollup_spend": plain(gap.rollup_spend),
        "spend_log_requests": gap.spend_log_requests,
        "spend_log_spend": plain(gap.spend_log_spend),
        "lost_spend": plain(gap.lost_spend),
    }


def report_document(report: Report) -> dict[str, Any]:
    """The whole report as JSON-ready data (report.schema.json): money as exact strings."""
    return {
        "header": _header(report.header),
        "lines": [_line(line) for line in report.lines],
        "totals": _line(dataclasses.replace(report.totals, customer="TOTAL", period="")),
        "daily": [_daily(day) for day in report.daily],
        "rollup_gaps": [_gap(gap) for gap in report.rollup_gaps],
        "rollup_check": {
            "state": report.rollup_state.value,
            "customer_days": report.rollup_days,
            "gaps": len(report.rollup_gaps),
            "lost_spend": plain(lost_spend_total(report)),
            "summary": rollup_sentence(report),
        },
        "notes": list(report.notes),
        "exceptions": len(report.exceptions),
        "status_counts": {
            status.value: count for status, count in status_counts(report.lines).items()
        },
    }


def write_json(report: Report, sink: BinaryIO) -> None:
    """The whole report as one JSON document (UTF-8, indented), ending in a newline."""
    text = json.dumps(report_document(report), ensure_ascii=False, indent=2)
    sink.write(text.encode("utf-8") + b"\n")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every `write_json` document validates against."""
    schema: dict[str, Any] = json.loads(
        resources.files("reconcile.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    )
    return schema
