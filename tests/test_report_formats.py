"""Every report format read back: exact money in CSV/JSON/XLSX, aligned text, safe HTML."""

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import numpy as np
import openpyxl
import pytest

from reconcile.report.chart import nice_ticks
from reconcile.report.data import json_schema
from reconcile.report.display import (
    KEY_LABELS,
    UNATTRIBUTED_LABEL,
    cents,
    key_cells,
    percent,
    plain,
    safe,
    width,
)
from reconcile.report.formats import ReportFormat, summary_text, write_report
from reconcile.report.text import CUSTOMER_COLUMNS
from reconcile.results import (
    LINE_FIELDS,
    UNATTRIBUTED,
    DailySpend,
    Header,
    Line,
    Report,
    RollupGap,
    RollupState,
    Status,
)

PARIS = ZoneInfo("Europe/Paris")
HOSTILE = '<script>alert("x")</script>'
IDS = [
    'acme, "quoted" & co | ltd',
    HOSTILE,
    "Zürich GmbH — ünïcødé 株式会社",
    "=HYPERLINK(\"https://evil\",'x')",
    "line\nbreak\tand\x1b[31m escape",
    UNATTRIBUTED,
    "plain-customer",
]
MONEY_FIELDS = [name for name in LINE_FIELDS if isinstance(getattr(Line("", ""), name), Decimal)]
INT_FIELDS = [name for name in LINE_FIELDS if type(getattr(Line("", ""), name)) is int]


def line(customer: str, period: str, status: Status, seed: int) -> Line:
    spend = Decimal(f"{seed}234.567890123456789012") / 7
    lago = Decimal("0.000123456789012345678") * seed
    delta = spend - lago
    return Line(
        customer=customer,
        period=period,
        requests=1_234_567 * seed,
        billable_requests=1_000_000 * seed,
        prompt_tokens=98_765_432 * seed,
        completion_tokens=12_345 * seed,
        spend=spend,
        matched_events=17 * seed,
        matched_cost=lago,
        missing_events=3 * seed if status is Status.UNDER_BILLED else 0,
        missing_spend=Decimal("1E-7") * seed,
        not_recoverable_events=seed,
        not_recoverable_spend=Decimal("-0.5") * seed,
        backfilled_events=seed,
        backfilled_spend=Decimal("12345678.9012345678901234567") * seed,
        backfill_runs=(3, 17 + seed),
        unexplained_events=seed,
        unexplained_cost=Decimal("0E-30"),
        duplicate_events=seed,
        duplicate_cost=Decimal("0.1") * seed,
        property_mismatch_events=seed,
        property_mismatch_cost=Decimal("0.2") * seed,
        no_such_request_events=seed,
        no_such_request_cost=Decimal("0.3") * seed,
        unattributable_requests=seed,
        unattributable_spend=Decimal("0.4") * seed,
        failed_requests_with_spend=seed,
        failed_spend=Decimal("0.5") * seed,
        lago_cost=lago,
        delta=delta if status is not Status.OVER_BILLED else -delta,
        delta_percent=(delta / spend * 100).quantize(Decimal("0.0001")) if seed % 3 else None,
        status=status,
    )


def totals(lines: Sequence[Line]) -> Line:
    sums: dict[str, Any] = {}
    for name in [*MONEY_FIELDS, *INT_FIELDS]:
        sums[name] = sum(
            (getattr(item, name) for item in lines), type(getattr(Line("", ""), name))()
        )
    runs = tuple(sorted({run for item in lines for run in item.backfill_runs}))
    return Line(
        customer="TOTAL", period="", backfill_runs=runs, delta_percent=Decimal("1.5"), **sums
    )


def header(**changes: Any) -> Header:
    base = Header(
        since=dt.datetime(2026, 10, 1, tzinfo=PARIS),
        until=dt.datetime(2026, 11, 1, tzinfo=PARIS),
        timezone="Europe/Paris",
        by="day",
        charge_by="team_id",
        code="litellm_usage",
        generated_at=dt.datetime(2026, 11, 1, 6, 30, 5, tzinfo=dt.UTC),
        version="0.1.0",
        source="postgresql://litellm:***@db.internal:5432/litellm",
        lago="https://lago.example.com/api/v1",
        customers=("acme", HOSTILE),
        tolerance=Decimal("0.01"),
    )
    return dataclasses.replace(base, **changes)


def make_report(
    statuses: Sequence[Status], *, days: int = 31, gaps: bool = True, notes: Sequence[str] = ()
) -> Report:
    lines = [
        line(IDS[index % len(IDS)], f"2026-10-{index % 28 + 1:02d}", status, index + 1)
        for index, status in enumerate(statuses)
    ]
    daily = [
        DailySpend(
            dt.date(2026, 10, 1) + dt.timedelta(days=day),
            Decimal(f"{(day * 37) % 101}.123456789012345678"),
            Decimal(f"{(day * 29) % 97}.5"),
        )
        for day in range(days)
    ]
    rollup_gaps = [
        RollupGap(
            HOSTILE,
            dt.date(2026, 10, 3),
            120,
            Decimal("10.000000000000000001"),
            100,
            Decimal("7.5"),
        ),
        RollupGap("acme", dt.date(2026, 10, 4), 5, Decimal("0.3"), 0, Decimal(0)),
    ]
    return Report(
        header(), lines, totals(lines), daily, rollup_gaps if gaps else [], notes,
        rollup_state=RollupState.COMPARED, rollup_days=5,
    )  # fmt: skip


FULL = [Status.UNDER_BILLED] * 3 + [Status.OVER_BILLED] * 2 + [Status.OK] * 2
FULL_NOTES = ("Lago's invoices could not be read: 503 <b>Service Unavailable</b>",)


@pytest.fixture
def full() -> Report:
    return make_report(FULL + [Status.OK] * 5, notes=FULL_NOTES)


@pytest.fixture
def empty() -> Report:
    return Report(header(customers=()), [], Line("TOTAL", ""), [], [])


@pytest.fixture
def all_ok() -> Report:
    return make_report([Status.OK] * 3, days=1, gaps=False)


def render(report: Report, fmt: ReportFormat) -> bytes:
    sink = io.BytesIO()
    write_report(report, fmt, sink)
    assert not sink.closed  # the sink stays the caller's
    return sink.getvalue()


# ---------------------------------------------------------------- shared display rules


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1234.565"), "1,234.57"),  # half up, not to even
        (Decimal("-1234.565"), "-1,234.57"),
        (Decimal("0.000123456789012345678"), "0.00"),
        (Decimal("-0.001"), "0.00"),  # never "-0.00"
        (Decimal("1E+6"), "1,000,000.00"),
        (Decimal("0E-30"), "0.00"),
    ],
)
def test_display_money_is_cents_with_separators(amount: Decimal, text: str) -> None:
    assert cents(amount) == text


def test_exact_money_has_every_digit_and_no_exponent() -> None:
    assert plain(Decimal("1E-7")) == "0.0000001"
    assert plain(Decimal("1.5E+3")) == "1500"
    assert plain(Decimal("0.000123456789012345678")) == "0.000123456789012345678"
    assert percent(None) == "n/a"
    assert percent(Decimal("12.3456")) == "12.35%"
    assert percent(Decimal("-0.004")) == "0.00%"


def test_unsafe_characters_are_shown_as_escapes() -> None:
    assert safe("a\x1b[2Jb\nc\u202ed") == "a\\x1b[2Jb\\nc\\u202ed"
    assert safe("Zürich 株式会社") == "Zürich 株式会社"
    assert width("株式会社") == 8


@pytest.mark.parametrize(
    ("low", "high"), [(0, 0), (0, 0.000123), (0, 1), (95.0, 150.3), (-20, 7), (0, 987_654.3)]
)
def test_chart_ticks_are_round_and_cover_the_values(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= min(low, 0) and ticks[-1] >= max(high, 0)
    assert 0 in ticks and 3 <= len(ticks) <= 12
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5, 10)) < 1e-6


# ---------------------------------------------------------------- CSV: the data contract


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_is_one_row_per_line_then_totals_with_every_digit(full: Report) -> None:
    rows = read_csv(render(full, ReportFormat.CSV))
    assert tuple(rows[0]) == LINE_FIELDS
    assert len(rows) == 1 + len(full.lines) + 1
    for expected, row in zip([*full.lines, full.totals], rows[1:], strict=True):
        values = dict(zip(LINE_FIELDS, row, strict=True))
        for name in MONEY_FIELDS:
            assert "e" not in values[name].lower(), (name, values[name])
            assert Decimal(values[name]) == getattr(expected, name), name
        for name in INT_FIELDS:
            assert int(values[name]) == getattr(expected, name), name
        runs = tuple(int(run) for run in values["backfill_runs"].split())
        assert runs == expected.backfill_runs
        percent_text = values["delta_percent"]
        assert (Decimal(percent_text) if percent_text else None) == expected.delta_percent
        assert values["status"] == expected.status.value
        assert values["period"] == expected.period
        assert values["customer"] == expected.customer  # exact, even with quotes and newlines
    assert rows[-1][:2] == ["TOTAL", ""]
    assert {row[0] for row in rows[1:-1]} == set(IDS)


def test_csv_of_an_empty_report_is_the_column_row_and_totals(empty: Report) -> None:
    rows = read_csv(render(empty, ReportFormat.CSV))
    assert tuple(rows[0]) == LINE_FIELDS
    assert len(rows) == 2
    assert rows[1][0] == "TOTAL"
    assert render(empty, ReportFormat.CSV).endswith(b"\r\n")


# ---------------------------------------------------------------- JSON and its schema


def no_floats(text: str) -> Decimal:
    raise AssertionError(f"a JSON float: {text}")


def validate(document: Any) -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(document)


def test_schema_describes_every_line_field_in_order() -> None:
    figures = json_schema()["$defs"]["figures"]
    assert tuple(figures["required"]) == LINE_FIELDS
    assert tuple(figures["properties"]) == LINE_FIELDS


def test_json_validates_and_round_trips_every_value(full: Report) -> None:
    data = render(full, ReportFormat.JSON)
    document = json.loads(data, parse_float=no_floats)
    validate(document)
    assert list(document) == [
        "header",
        "lines",
        "totals",
        "daily",
        "rollup_gaps",
        "rollup_check",
        "notes",
        "exceptions",
        "status_counts",
    ]
    head = document["header"]
    assert dt.datetime.fromisoformat(head["since"]) == full.header.since
    assert head["since"] == "2026-10-01T00:00:00+02:00"
    assert head["until"] == "2026-11-01T00:00:00+01:00"  # across the DST change: offsets kept
    assert dt.datetime.fromisoformat(head["generated_at"]) == full.header.generated_at
    assert head["customers"] == ["acme", HOSTILE]
    assert Decimal(head["tolerance"]) == full.header.tolerance
    for expected, got in zip(
        [*full.lines, full.totals], [*document["lines"], document["totals"]], strict=True
    ):
        assert list(got) == list(LINE_FIELDS)
        for name in MONEY_FIELDS:
            assert Decimal(got[name]) == getattr(expected, name), name
        for name in INT_FIELDS:
            assert got[name] == getattr(expected, name), name
        assert tuple(got["backfill_runs"]) == expected.backfill_runs
        assert (None if got["delta_percent"] is None else Decimal(got["delta_percent"])) == (
            expected.delta_percent
        )
        assert got["status"] == expected.status.value
    assert [line["customer"] for line in document["lines"]] == [
        line.customer for line in full.lines
    ]
    assert [
        (Decimal(day["litellm_spend"]), Decimal(day["lago_cost"])) for day in document["daily"]
    ] == [(day.litellm_spend, day.lago_cost) for day in full.daily]
    gap = document["rollup_gaps"][0]
    assert gap["customer"] == HOSTILE and gap["day"] == "2026-10-03"
    assert Decimal(gap["lost_spend"]) == Decimal("2.500000000000000001")
    assert document["notes"] == list(FULL_NOTES)
    assert document["exceptions"] == len(full.exceptions) == 5
    assert document["status_counts"] == {"under-billed": 3, "over-billed": 2, "ok": 7}


def test_json_of_an_empty_report_validates(empty: Report) -> None:
    document = json.loads(render(empty, ReportFormat.JSON))
    validate(document)
    assert document["lines"] == [] and document["exceptions"] == 0
    assert document["totals"]["customer"] == "TOTAL"


def test_schema_rejects_floats_and_exponents(all_ok: Report) -> None:
    document = json.loads(render(all_ok, ReportFormat.JSON))
    validate(document)
    for bad in (1.5, "1.5E-7", "1,234.56"):
        broken = json.loads(json.dumps(document))
        broken["lines"][0]["spend"] = bad
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


# ---------------------------------------------------------------- XLSX


def stored(amount: Decimal) -> float:
    """The number an XLSX cell holds for an amount: openpyxl writes "%.16g" (Excel keeps 15)."""
    return float(f"{float(amount):.16g}")


def load(report: Report) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(render(report, ReportFormat.XLSX)))


def test_xlsx_has_summary_customers_exceptions_and_gaps(full: Report) -> None:
    book = load(full)
    assert book.sheetnames == ["Summary", "Customers", "Exceptions", "Rollup gaps", "Daily"]
    customers = book["Customers"]
    assert tuple(cell.value for cell in customers[1]) == LINE_FIELDS
    assert customers.freeze_panes == "C2"
    last = openpyxl.utils.get_column_letter(len(LINE_FIELDS))
    assert customers.auto_filter.ref == f"A1:{last}{len(full.lines) + 1}"
    column = {name: index for index, name in enumerate(LINE_FIELDS)}
    for row_number, expected in enumerate(full.lines, start=2):
        row = customers[row_number]
        name = row[column["customer"]]
        assert name.data_type == "s"  # "=HYPERLINK(...)" stays text, never a formula
        assert name.value == (
            UNATTRIBUTED_LABEL if expected.customer == "" else safe(expected.customer)
        )
        for field in MONEY_FIELDS:
            assert row[column[field]].value == stored(getattr(expected, field)), field
            assert row[column[field]].number_format == "$#,##0.00"
        for field in INT_FIELDS:
            assert row[column[field]].value == getattr(expected, field), field
            assert row[column[field]].number_format == "#,##0"
        delta_percent = row[column["delta_percent"]]
        assert delta_percent.value == (  # a fraction: formulas see -0.04 for -4%
            None if expected.delta_percent is None else float(expected.delta_percent / 100)
        )
        assert delta_percent.number_format == "0.00%"
        assert row[column["status"]].value == expected.status.value
        assert row[column["backfill_runs"]].value == " ".join(map(str, expected.backfill_runs))
    total = customers[len(full.lines) + 3]
    assert total[0].value == "TOTAL" and total[0].font.b
    assert total[column["spend"]].value == stored(full.totals.spend)
    assert customers.column_dimensions["A"].width >= len(UNATTRIBUTED_LABEL)

    exceptions = book["Exceptions"]
    assert exceptions.freeze_panes == "C2"
    assert exceptions.auto_filter.ref == f"A1:{last}{len(full.exceptions) + 1}"
    statuses = [row[column["status"]] for row in exceptions.iter_rows(min_row=2)]
    assert [cell.value for cell in statuses] == [line.status.value for line in full.exceptions]

    gaps = book["Rollup gaps"]
    assert [cell.value for cell in gaps[1]] == [
        "customer",
        "day",
        "rollup_requests",
        "rollup_spend",
        "spend_log_requests",
        "spend_log_spend",
        "lost_spend",
    ]
    assert gaps.freeze_panes == "B2" and gaps.auto_filter.ref == "A1:G3"
    first = [cell.value for cell in gaps[2]]
    assert first[0] == HOSTILE and first[1] == dt.datetime(2026, 10, 3)
    assert first[6] == 2.5
    assert gaps["B2"].number_format == "yyyy-mm-dd"

    daily = book["Daily"]
    assert daily.max_row == 1 + len(full.daily) and daily.freeze_panes == "B2"

    summary = {
        row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True) if row[0]
    }
    assert summary["source"] == full.header.source
    assert summary["Lago"] == full.header.lago
    assert summary["tolerance"] == "0.01 USD"
    assert summary["customers"] == f"acme, {HOSTILE}"
    assert summary["spend"] == stored(full.totals.spend)
    assert summary["under-billed"] == 3 and summary["over-billed"] == 2 and summary["ok"] == 7
    assert summary["rollup gaps"] == 2
    assert FULL_NOTES[0] in [cell.value for cell in book["Summary"]["B"]]


def test_xlsx_of_an_empty_report_keeps_its_sheets(empty: Report) -> None:
    book = load(empty)
    assert book.sheetnames == ["Summary", "Customers", "Exceptions", "Rollup gaps", "Daily"]
    assert book["Customers"].auto_filter.ref.endswith("1")
    assert book["Customers"].freeze_panes == "C2"
    assert book["Exceptions"].max_row == 1


# ---------------------------------------------------------------- table and markdown


def columns(text: str) -> str:
    """Text where each character takes one column: wide ones padded with a NUL."""
    return "".join(char + "\0" * (width(char) - 1) for char in text)


def test_table_aligns_the_key_figures(full: Report) -> None:
    text = render(full, ReportFormat.TABLE).decode("utf-8")
    assert "\x1b" not in text and "\\x1b[31m" in text  # an escape in an id cannot repaint
    rows = text.splitlines()
    head = next(row for row in rows if row.startswith("customer "))
    start = rows.index(head)
    body = [row for row in rows[start + 2 :] if row and not set(row) <= {"-", "="}][
        : len(full.lines) + 1
    ]
    edges = {}  # a numeric column's right edge, a text column's left edge
    position = 0
    for label in KEY_LABELS:
        position = head.index(label, position)
        edges[label] = (
            position + len(label) if label not in {"customer", "period", "status"} else position
        )
        position += len(label)
    for expected, text_row in zip([*full.lines, full.totals], body, strict=True):
        row = columns(text_row)
        cells = re.split(r" {2,}", text_row)
        if expected is full.totals:
            assert cells[0] == "TOTAL" and cents(full.totals.spend) in cells
            continue
        want = key_cells(expected)
        want[0] = want[0] if width(want[0]) <= CUSTOMER_COLUMNS else cells[0]
        assert cells == want
        for label in KEY_LABELS[2:-1]:
            edge = edges[label]
            assert row[edge - 1] != " " and row[edge] == " ", (label, row)
        assert row[edges["status"]] != " " and row[edges["status"] - 1] == " "
    assert "Rollup gaps" in text and FULL_NOTES[0] in text
    assert "3 under-billed, 2 over-billed" in text
    assert max(width(row) for row in rows[start:]) <= 170


def test_table_keeps_under_and_over_billing_apart(full: Report) -> None:
    rows = render(full, ReportFormat.TABLE).decode("utf-8").splitlines()
    under = [index for index, row in enumerate(rows) if row.endswith("  under-billed")]
    over = [index for index, row in enumerate(rows) if row.endswith("  over-billed")]
    assert len(under) == 3 and len(over) == 2
    assert min(over) == max(under) + 2 and set(rows[max(under) + 1]) == {"-"}  # a rule apart


def test_table_of_an_empty_report_still_has_header_and_totals(empty: Report) -> None:
    text = render(empty, ReportFormat.TABLE).decode("utf-8")
    assert "customers     all" in text and "TOTAL" in text and "0 lines" in text


def test_markdown_has_the_header_as_a_list_and_aligned_tables(full: Report) -> None:
    text = render(full, ReportFormat.MD).decode("utf-8")
    assert "- **source:** postgresql://litellm:\\*\\*\\*@db.internal:5432/litellm" in text
    assert "- **tolerance:** 0.01 USD" in text
    assert "<script>" not in text and "\\<script\\>" in text
    assert "## Under-billed (3)" in text and "## Over-billed (2)" in text
    assert text.index("## Under-billed") < text.index("## Over-billed") < text.index("## Within")
    tables: list[list[str]] = []
    previous = ""
    for row in text.splitlines():
        if row.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(row)
        previous = row
    assert len(tables) == 5  # totals, three statuses, rollup gaps
    for table in tables:
        assert len({width(row) for row in table}) == 1, table  # pipes line up
        assert len({row.count(" | ") for row in table}) == 1  # no cell breaks out
    alignments = tables[0][1].strip("| ").split(" | ")
    assert all(cell.endswith(":") for cell in alignments)  # figures align right
    for expected in full.lines:
        assert cents(expected.spend) in text
    assert cents(full.totals.spend) in text


# ---------------------------------------------------------------- HTML


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.table_rows: dict[str, int] = {}
        self._table = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table = attributes.get("class") or ""
            self.table_rows[self._table] = 0
        if tag == "tr" and self._table:
            self.table_rows[self._table] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, css: str = "") -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and set(css.split()) <= set((attrs.get("class") or "").split())
        ]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def check_page(page: Page, report: Report) -> None:
    assert len(page.find("svg")) == (1 if report.daily else 0)
    for series in ("litellm", "lago"):
        bars = page.find("rect", f"bar {series}")
        assert [bar["data-day"] for bar in bars] == [day.day.isoformat() for day in report.daily]
    assert page.table_rows.get("exceptions", 0) == (
        len(report.exceptions) + 1 if report.exceptions else 0
    )
    assert page.table_rows.get("rollup-gaps", 0) == (
        len(report.rollup_gaps) + 1 if report.rollup_gaps else 0
    )
    assert page.table_rows["totals"] == 2
    assert page.table_rows["lines"] == len(report.lines) + 2


@pytest.mark.parametrize("days", [1, 31])
def test_html_has_the_chart_tables_and_escapes_hostile_ids(days: int) -> None:
    report = make_report(FULL, days=days, notes=FULL_NOTES)
    html = render(report, ReportFormat.HTML).decode("utf-8")
    page = parse(html)
    check_page(page, report)
    assert [
        tag for tag, _ in page.tags if tag in {"script", "link", "img", "iframe", "object"}
    ] == []
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", html)  # self-contained
    text = "".join(page.text)
    assert HOSTILE in text  # shown as text...
    assert html.count("<script") == 0  # ...never as markup
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert cents(report.totals.spend) in text and cents(report.totals.lago_cost) in text
    assert page.find("meta", "") and any(
        attrs.get("http-equiv") == "Content-Security-Policy" for attrs in page.find("meta")
    )


def test_html_without_exceptions_or_days(all_ok: Report, empty: Report) -> None:
    page = parse(render(all_ok, ReportFormat.HTML).decode("utf-8"))
    check_page(page, all_ok)
    assert "None: every line is within the tolerance." in "".join(page.text)
    page = parse(render(empty, ReportFormat.HTML).decode("utf-8"))
    check_page(page, empty)
    assert "nothing to chart" in "".join(page.text)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium is not installed (apt-get install chromium): the HTML report is not rendered"
    if os.environ.get("RECONCILE_REQUIRE_SHARED"):
        pytest.fail(message + "; CI must install it (.ci/run does)")
    pytest.skip(message)


def png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG as an array of height x width x channels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * channels)
    out = np.zeros((h, w * channels), dtype=np.int32)
    previous = np.zeros(w * channels, dtype=np.int32)
    for y in range(h):
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            current = row
        elif kind == 1:
            current = np.cumsum(row.reshape(w, channels), axis=0).reshape(-1) % 256
        elif kind == 2:
            current = (row + previous) % 256
        else:  # average or Paeth: each byte needs the one just decoded to its left
            current = np.zeros_like(row)
            for x in range(w * channels):
                a = current[x - channels] if x >= channels else 0
                b = previous[x]
                if kind == 3:
                    current[x] = (row[x] + (a + b) // 2) % 256
                else:
                    c = previous[x - channels] if x >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    current[x] = (row[x] + predictor) % 256
        out[y], previous = current, current
    return out.reshape(h, w, channels)[:, :, :3]


def near(pixels: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).sum(axis=2) < 30).sum())


def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    report = make_report(FULL, days=31, notes=FULL_NOTES)
    page_file = tmp_path / "report.html"
    page_file.write_bytes(render(report, ReportFormat.HTML))
    screenshot = tmp_path / "report.png"
    common = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1280,1600", page_file.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", page_file.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    ).stdout
    page = parse(dom)
    check_page(page, report)  # what the browser built, not just what we wrote
    assert HOSTILE in "".join(page.text) and not page.find("script")

    pixels = png_pixels(screenshot.read_bytes())
    assert pixels.shape == (1600, 1280, 3)
    assert (pixels.min(axis=2) < 200).mean() > 0.02  # ink, not a blank page
    assert near(pixels, "#4c78a8") > 500 and near(pixels, "#f58518") > 500  # both series drawn


# ---------------------------------------------------------------- entry point and summary


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_writes_something_for_every_report(
    fmt: ReportFormat, full: Report, empty: Report, all_ok: Report
) -> None:
    for report in (full, empty, all_ok):
        data = render(report, fmt)
        assert data
        if not fmt.binary:
            data.decode("utf-8")
    assert fmt.suffix.startswith(".")
    assert ReportFormat(fmt.value) is fmt


def test_summary_names_totals_counts_top_exceptions_gaps_and_notes(full: Report) -> None:
    text = summary_text(full)
    assert cents(full.totals.spend) in text and cents(full.totals.delta) in text
    assert "3 under-billed, 2 over-billed" in text
    assert "and 0 more" not in text and text.count("-billed  ") >= 5
    assert "2 customer-days" in text and FULL_NOTES[0] in text
    assert "\x1b" not in text and "\n\n\n" not in text
    more = make_report(FULL * 3)
    assert "and 10 more" in summary_text(more)


def test_summary_of_an_empty_report(empty: Report) -> None:
    text = summary_text(empty)
    assert "0 under-billed, 0 over-billed" in text and "top exceptions" not in text
