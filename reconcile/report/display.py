"""What the display formats share: cents, percentages, safe text, the header as labels."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import unicodedata
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from reconcile.results import (
    UNATTRIBUTED,
    Header,
    Line,
    Report,
    RollupGap,
    RollupState,
    Status,
)

CENT = Decimal("0.01")
UNATTRIBUTED_LABEL = "(no charge-by id)"
STATUS_ORDER = (Status.UNDER_BILLED, Status.OVER_BILLED, Status.OK)

# Invisible or layout-changing characters: a customer id holding an escape sequence, a bidi
# override or a newline must not repaint a terminal, reorder a cell or break a table row.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def plain(amount: Decimal) -> str:
    """An amount exactly, as CSV and JSON write it: the one rule for their digits.

    Every significant digit, never an exponent, no trailing zeros after the point, no "-0":
    Decimal("1.5E-7") -> "0.00000015", Decimal("2.500") -> "2.5", Decimal("1.5E+3") -> "1500",
    Decimal("-0E-30") -> "0".
    """
    if amount.is_zero():
        return "0"
    text = format(amount, "f")  # exact whatever the context's precision, unlike normalize()
    return text.rstrip("0").rstrip(".") if "." in text else text


def cents(amount: Decimal) -> str:
    """Rounded half up to cents, with thousands separators: "1,234.57", never "-0.00"."""
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    if rounded.is_zero():
        rounded = abs(rounded)
    return f"{rounded:,.2f}"


def percent(value: Decimal | None, *, missing: str = "n/a") -> str:
    """A percentage with two decimals, "12.35%", or `missing` when there is none."""
    if value is None:
        return missing
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if rounded.is_zero():
        rounded = abs(rounded)
    return f"{rounded:,.2f}%"


def plural(count: int, noun: str) -> str:
    """The count and the noun, plural unless one: "1 line", "1,024 lines"."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def safe(text: str) -> str:
    """`text` with control, format and separator characters shown as escapes (\\x1b, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(
        ascii(char)[1:-1] if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        for char in text
    )


def customer_label(customer: str) -> str:
    """The customer as people should read it: safe, and named when it is the unattributed line."""
    return UNATTRIBUTED_LABEL if customer == UNATTRIBUTED else safe(customer)


def width(text: str) -> int:
    """Terminal columns `text` takes: wide East Asian characters two, combining marks none."""
    if text.isascii():
        return len(text)
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return total


def truncate(text: str, columns: int) -> str:
    """`text` cut to `columns` terminal columns, ending in "…" when cut."""
    if width(text) <= columns:
        return text
    kept: list[str] = []
    used = 1  # the ellipsis
    for char in text:
        used += width(char)
        if used > columns:
            break
        kept.append(char)
    return "".join(kept) + "…"


def moment(when: dt.datetime) -> str:
    """A time as people read it, with its offset: "2026-11-01 00:00+01:00"."""
    exact = when.second or when.microsecond
    return when.isoformat(sep=" ", timespec="seconds" if exact else "minutes")


def window(header: Header) -> str:
    """The report's window in its time zone: "2026-11-01 00:00+01:00 to 2026-12-01 00:00+01:00"."""
    return f"{moment(header.since)} to {moment(header.until)}"


def header_items(header: Header) -> list[tuple[str, str]]:
    """The header block as (label, value) pairs, in reading order, every value made safe."""
    customers = ", ".join(customer_label(name) for name in header.customers) or "all"
    return [
        ("window", f"{window(header)} (until excluded)"),
        ("time zone", safe(header.timezone)),
        ("periods", f"by {safe(header.by)}"),
        ("charge-by", safe(header.charge_by)),
        ("event code", safe(header.code)),
        ("customers", customers),
        ("tolerance", f"{plain(header.tolerance)} USD"),
        ("source", safe(header.source)),
        ("Lago", safe(header.lago)),
        ("generated at", moment(header.generated_at.astimezone(dt.UTC))),
        ("version", f"reconcile {safe(header.version)}"),
    ]


def status_counts(lines: Sequence[Line]) -> dict[Status, int]:
    """How many lines have each status, every status present, in STATUS_ORDER."""
    counts = collections.Counter(line.status for line in lines)
    return {status: counts[status] for status in STATUS_ORDER}


def customer_counts(report: Report) -> dict[Status, int]:
    """How many distinct customers have at least one line of each status."""
    customers: dict[Status, set[str]] = {status: set() for status in STATUS_ORDER}
    for line in report.lines:
        customers[line.status].add(line.customer)
    return {status: len(names) for status, names in customers.items()}


def not_billable_spend(line: Line) -> Decimal:
    """Spend LiteLLM recorded that no one bills: no charge-by id, or a failure.

    Negative costs (never sent either) are not added in: they would net against the rest.
    """
    return line.unattributable_spend + line.failed_spend


def lost_spend_total(report: Report) -> Decimal:
    """Spend LiteLLM's rollup holds and its spend logs lost, over every gap."""
    return sum((gap.lost_spend for gap in report.rollup_gaps), Decimal(0))


def rollup_sentence(report: Report) -> str:
    """What the rollup cross-check found, said as such: gaps, agreement, or why nothing."""
    gaps = report.rollup_gaps
    if gaps:
        return (
            f"{plural(len(gaps), 'customer-day')} where LiteLLM's daily rollup holds more than "
            f"its spend logs: {cents(lost_spend_total(report))} USD lost, not recoverable"
        )
    return {
        RollupState.COMPARED: "none: the rollup and the spend logs agree on "
        + plural(report.rollup_days, "customer-day"),
        RollupState.NO_ROWS: "no rollup rows: LiteLLM's daily rollup holds no row for the "
        "window's whole UTC days, so nothing was compared",
        RollupState.NO_TABLE: "no rollup table: nothing was compared",
        RollupState.NOT_READABLE: "not compared: this role may not read LiteLLM's daily "
        "rollup (see the notes)",
        RollupState.NO_WHOLE_DAY: "not compared: the window holds no whole UTC day, the "
        "rollup's unit",
        RollupState.NOT_CHECKED: "not checked",
    }[report.rollup_state]


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of the display tables: its title, its text for a line, and its alignment."""

    label: str
    cell: Callable[[Line], str]
    numeric: bool = True


# The key figures of a line: the whole line is in the CSV, JSON and XLSX.
KEY_COLUMNS = (
    Column("customer", lambda line: customer_label(line.customer), numeric=False),
    Column("period", lambda line: safe(line.period), numeric=False),
    Column("requests", lambda line: f"{line.requests:,}"),
    Column("spend", lambda line: cents(line.spend)),
    Column("Lago", lambda line: cents(line.lago_cost)),
    Column("missing", lambda line: cents(line.missing_spend)),
    Column("backfilled", lambda line: cents(line.backfilled_spend)),
    Column("unexplained", lambda line: cents(line.unexplained_cost)),
    Column("not billable", lambda line: cents(not_billable_spend(line))),
    Column("delta", lambda line: cents(line.delta)),
    Column("delta %", lambda line: percent(line.delta_percent)),
    Column("status", lambda line: line.status.value, numeric=False),
)
KEY_LABELS = tuple(column.label for column in KEY_COLUMNS)
KEY_NUMERIC = tuple(column.numeric for column in KEY_COLUMNS)

GAP_LABELS = (
    "customer",
    "day (UTC)",
    "rollup requests",
    "rollup spend",
    "spend-log requests",
    "spend-log spend",
    "lost",
)
GAP_NUMERIC = (False, False, True, True, True, True, True)


def key_cells(line: Line) -> list[str]:
    """A line's KEY_COLUMNS as text."""
    return [column.cell(line) for column in KEY_COLUMNS]


def totals_cells(report: Report) -> list[str]:
    """The totals' KEY_COLUMNS as text, with no status: one of sums would net under- and over-."""
    cells = key_cells(report.totals)
    return ["TOTAL", "", *cells[2:-1], ""]


def gap_cells(gap: RollupGap) -> list[str]:
    """A rollup gap's GAP_LABELS as text."""
    return [
        customer_label(gap.customer),
        gap.day.isoformat(),
        f"{gap.rollup_requests:,}",
        cents(gap.rollup_spend),
        f"{gap.spend_log_requests:,}",
        cents(gap.spend_log_spend),
        cents(gap.lost_spend),
    ]
