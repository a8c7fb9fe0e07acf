"""The report as one self-contained HTML page: header, totals, a daily chart, exceptions, gaps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import BinaryIO

from reconcile.report.chart import daily_chart
from reconcile.report.display import (
    GAP_LABELS,
    GAP_NUMERIC,
    KEY_LABELS,
    KEY_NUMERIC,
    cents,
    customer_counts,
    gap_cells,
    header_items,
    key_cells,
    lost_spend_total,
    moment,
    not_billable_spend,
    percent,
    plural,
    rollup_sentence,
    safe,
    status_counts,
    totals_cells,
)
from reconcile.results import Line, Report, Status

_STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --rule: #d1d9e0; --head: #f6f8fa;
  --under: #b42318; --under-bg: #fdecea; --over: #8a5a00; --over-bg: #fff4d6;
  --ok: #1a7f37; --ok-bg: #e6f6ea; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 36px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--rule); }
.subtitle, .muted, footer { color: var(--muted); }
.subtitle { margin: 0 0 20px; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; }
dl.header dt { color: var(--muted); }
dl.header dd { margin: 0; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr));
  gap: 12px; margin: 24px 0 0; }
.card { border: 1px solid var(--rule); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 12px; }
.card.under { border-color: var(--under); } .card.over { border-color: var(--over); }
.chart { margin: 0; border: 1px solid var(--rule); border-radius: 8px; padding: 8px 8px 0; }
.chart svg { display: block; width: 100%; height: auto; }
.scroll { overflow-x: auto; border: 1px solid var(--rule); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table { font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--rule); white-space: nowrap;
  text-align: left; }
th { background: var(--head); font-weight: 600; }
tbody tr:last-child td { border-bottom: 0; }
th.num, td.num { text-align: right; }
td.customer { max-width: 280px; overflow: hidden; text-overflow: ellipsis; }
tr.total td { font-weight: 600; border-top: 2px solid var(--fg); border-bottom: 0; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.status.under-billed { color: var(--under); background: var(--under-bg); }
.status.over-billed { color: var(--over); background: var(--over-bg); }
.status.ok { color: var(--ok); background: var(--ok-bg); }
details > summary { cursor: pointer; font-weight: 600; margin: 36px 0 12px; }
ul.notes { margin: 20px 0 0; padding: 8px 14px 8px 30px; border-left: 4px solid var(--over);
  background: var(--over-bg); border-radius: 4px; }
footer { margin-top: 40px; font-size: 12px; }
@media print { main { max-width: none; padding: 0; } .scroll { overflow: visible; } }
"""

# Nothing may load or run: the page is one file, and a hostile id must stay text.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _cell(text: str, *, numeric: bool, label: str) -> str:
    if label == "status" and text:
        return f'<td><span class="status {escape(text)}">{escape(text)}</span></td>'
    if label == "customer":
        return f'<td class="customer" title="{escape(text)}">{escape(text)}</td>'
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _table(
    labels: Sequence[str],
    numeric: Sequence[bool],
    rows: Sequence[Sequence[str]],
    *,
    total: Sequence[str] | None = None,
    css: str = "",
) -> str:
    head = "".join(
        f'<th class="num">{escape(label)}</th>' if right else f"<th>{escape(label)}</th>"
        for label, right in zip(labels, numeric, strict=True)
    )

    def row(cells: Sequence[str], attributes: str = "") -> str:
        tds = "".join(
            _cell(text, numeric=right, label=label)
            for text, right, label in zip(cells, numeric, labels, strict=True)
        )
        return f"<tr{attributes}>{tds}</tr>"

    body = "\n".join(row(cells) for cells in rows)
    if total is not None:
        body += "\n" + row(total, ' class="total"')
    return (
        f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _lines_table(lines: Sequence[Line], *, css: str, total: Sequence[str] | None = None) -> str:
    return _table(
        KEY_LABELS, KEY_NUMERIC, [key_cells(line) for line in lines], total=total, css=css
    )


def _card(label: str, value: str, detail: str = "", css: str = "") -> str:
    return (
        f'<div class="card {css}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="detail">{escape(detail)}</div></div>'
    )


def _cards(report: Report) -> str:
    totals = report.totals
    lines = status_counts(report.lines)
    customers = customer_counts(report)
    under, over = Status.UNDER_BILLED, Status.OVER_BILLED
    return "\n".join(
        [
            '<section class="cards" id="totals-cards">',
            _card("LiteLLM spend", cents(totals.spend), f"{totals.billable_requests:,} billable"),
            _card("Lago holds", cents(totals.lago_cost), f"{totals.matched_events:,} matched"),
            _card("Delta", cents(totals.delta), percent(totals.delta_percent)),
            _card(
                "Missing in Lago",
                cents(totals.missing_spend),
                f"{totals.missing_events:,} events, "
                f"{totals.not_recoverable_events:,} not recoverable",
            ),
            _card(
                "Unexplained in Lago",
                cents(totals.unexplained_cost),
                f"{totals.unexplained_events:,} events",
            ),
            _card("Not billable", cents(not_billable_spend(totals)), "no id or failed"),
            _card(
                "Under-billed",
                f"{customers[under]:,}",
                f"customers, {plural(lines[under], 'line')}",
                "under" if lines[under] else "",
            ),
            _card(
                "Over-billed",
                f"{customers[over]:,}",
                f"customers, {plural(lines[over], 'line')}",
                "over" if lines[over] else "",
            ),
            "</section>",
        ]
    )


def _notes(report: Report) -> str:
    # First, before any figure: a note says what the figures could not take into account.
    if not report.notes:
        return ""
    notes = "".join(f"<li>{escape(safe(note))}</li>" for note in report.notes)
    return f'<ul class="notes" id="notes">{notes}</ul>'


def page(report: Report) -> str:
    """The whole page, every text from the report escaped."""
    header = report.header
    title = f"Reconciliation report {header.since:%Y-%m-%d} to {header.until:%Y-%m-%d}"
    items = "\n".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in header_items(header)
    )
    exceptions = report.exceptions
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>",
        "<body><main>",
        "<h1>Reconciliation report</h1>",
        '<p class="subtitle">LiteLLM spend against Lago usage, per customer and '
        f"{escape(safe(header.by))}; amounts in USD.</p>",
        f'<dl class="header" id="header">\n{items}\n</dl>',
        _notes(report),
        _cards(report),
        f"<h2>Daily spend ({escape(safe(header.timezone))})</h2>",
        daily_chart(report.daily),
        f"<h2>Exceptions ({len(exceptions):,})</h2>",
        _lines_table(exceptions, css="exceptions")
        if exceptions
        else '<p class="muted">None: every line is within the tolerance.</p>',
        f"<h2>Rollup gaps ({len(report.rollup_gaps):,})</h2>",
    ]
    if report.rollup_gaps:
        parts += [
            '<p class="muted">UTC days where LiteLLM\'s daily rollup holds more spend than its '
            f"spend logs: {escape(cents(lost_spend_total(report)))} lost, not recoverable.</p>",
            _table(
                GAP_LABELS,
                GAP_NUMERIC,
                [gap_cells(gap) for gap in report.rollup_gaps],
                css="rollup-gaps",
            ),
        ]
    else:
        sentence = rollup_sentence(report)
        parts.append(f'<p class="muted">{escape(sentence[:1].upper() + sentence[1:])}.</p>')
    parts += [
        "<h2>Totals</h2>",
        _table(KEY_LABELS[2:-1], KEY_NUMERIC[2:-1], [totals_cells(report)[2:-1]], css="totals"),
        f"<details><summary>All lines ({len(report.lines):,})</summary>",
        _lines_table(report.lines, css="lines", total=totals_cells(report)),
        "</details>",
    ]
    parts += [
        f"<footer>Generated {escape(moment(header.generated_at.astimezone(dt.UTC)))} by "
        f"reconcile {escape(safe(header.version))}.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(report: Report, sink: BinaryIO) -> None:
    """The page, UTF-8."""
    sink.write(page(report).encode("utf-8"))
