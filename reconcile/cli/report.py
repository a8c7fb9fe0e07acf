"""`reconcile report`: per customer and period, what LiteLLM recorded and what Lago holds."""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from reconcile import commands
from reconcile.cli.options import (
    CHUNK_ROWS_OPTION,
    CUSTOMER_OPTION,
    margins,
    matching_options,
    settings,
    source_options,
)
from reconcile.cli.output import open_output
from reconcile.cli.targets import lago_options, lago_settings, state_options, state_settings
from reconcile.errors import EXIT_UNSENT, ConfigError
from reconcile.report.build import ReportSettings, absent_message, time_zone
from reconcile.report.display import cents, lost_spend_total
from reconcile.report.formats import ReportFormat, summary_text, write_report
from reconcile.results import Report
from reconcile.window import Window, parse_instant

EXIT_CODES_REPORT_HELP = """\
\b
Exit codes:
  0  the report was written (with --check: every line is ok and no rollup gap)
  1  error (the database or Lago failed); safe to run again
  2  usage or configuration error; the message names the setting and the fix;
     also when -o cannot be written, or no --customer id has a spend-log row or
     a Lago event in the window (ids with none are named on stderr)
  3  with --check: a customer has missing or unexplained events or a delta beyond
     --tolerance, or LiteLLM's daily rollup holds spend its spend logs lost
  5  interrupted (SIGINT or SIGTERM): nothing written, an existing -o file unchanged
"""


@click.command(epilog=EXIT_CODES_REPORT_HELP)
@click.option(
    "--since",
    required=True,
    metavar="TIME",
    help="Start, included: YYYY-MM-DD (midnight in --timezone) or ISO-8601.",
)
@click.option("--until", required=True, metavar="TIME", help="End, excluded; same formats.")
@click.option(
    "--by",
    type=click.Choice(["day", "month"]),
    default="day",
    show_default=True,
    help="One line per customer and day, or per customer and month.",
)
@CUSTOMER_OPTION
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    metavar="TZ",
    help="IANA time zone of the days and months (and of dates given to --since/--until).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice([member.value for member in ReportFormat]),
    default=ReportFormat.TABLE.value,
    show_default=True,
    help="table for a terminal; csv, json and xlsx keep every digit; md; html with a chart.",
)
@click.option(
    "-o",
    "--output",
    default="-",
    metavar="FILE",
    help="Write here instead of stdout (written whole or not at all); needed for xlsx.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 3 when a customer has missing or unexplained events or a delta beyond "
    "--tolerance, or on a rollup gap (alerting).",
)
@click.option(
    "--tolerance",
    default="0.01",
    show_default=True,
    metavar="USD",
    help="A line is under- or over-billed when LiteLLM and Lago differ by more than this.",
)
@matching_options
@lago_options
@state_options
@source_options
@CHUNK_ROWS_OPTION
@click.pass_context
def report(
    ctx: click.Context,
    /,
    since: str,
    until: str,
    by: str,
    customers: tuple[str, ...],
    timezone: str,
    output_format: str,
    output: str,
    check: bool,
    tolerance: str,
    **options: Any,
) -> None:
    """Reconcile a period for finance: per customer, LiteLLM's spend against Lago's events.

    Read-only: sends nothing. For each charge-by id and day (or month) in --timezone: requests,
    tokens and spend from LiteLLM's spend logs; the matching events and their cost in Lago;
    events still missing (and whether an invoice already finalized makes them unrecoverable);
    what reconcile backfilled (from its ledger); unexplained events in Lago by reason; rows
    LiteLLM does not bill; and the delta with a status. It also checks LiteLLM's daily rollup
    tables against the spend logs, which shows spend-log rows lost or deleted by retention.

    \b
    Example:
      reconcile report --since 2026-10-01 --until 2026-11-01 --by month
      reconcile report --since 2026-10-01 --until 2026-11-01 --format xlsx -o october.xlsx
      reconcile report --since 2026-11-26 --until 2026-11-27 --check   # alert on exit 3
    """
    fmt = ReportFormat(output_format)
    if fmt is ReportFormat.XLSX and output == "-" and sys.stdout.isatty():
        raise ConfigError("--format xlsx writes a binary workbook: add -o report.xlsx")
    zone = time_zone(timezone)
    source, charge_by, code = settings(
        ctx, options["database_url"], options["charge_by"], options["event_code"]
    )
    margins_given, settle = margins(options)
    report_settings = ReportSettings(
        window=Window(
            parse_instant(since, option="--since", zone=zone),
            parse_instant(until, option="--until", zone=zone),
        ),
        charge_by=charge_by,
        code=code,
        timezone=timezone,
        by=by,
        customers=frozenset(customers),
        tolerance=parse_tolerance(tolerance),
        margins=margins_given,
        settle=settle,
        chunk_rows=options["chunk_rows"],
    )
    lago = lago_settings(ctx, options["lago_api_base"], options["lago_api_key"])
    state = state_settings(ctx, options["state_database_url"], options["state_schema"], source)
    with open_output(output) as sink:  # opened first: an unwritable -o fails before the work
        result = commands.report(source, lago, state, report_settings)
        if customers and len(result.absent_customers) == len(report_settings.customers):
            raise ConfigError(absent_message(result.absent_customers, charge_by))
        write_report(result, fmt, sink)
    if output != "-" or fmt is not ReportFormat.TABLE:
        click.echo(summary_text(result), err=True)
    elif result.absent_customers:
        click.echo(
            f"reconcile: warning: {absent_message(result.absent_customers, charge_by)}",
            err=True,
        )
    if check and result.failed_check:
        click.echo(f"reconcile: --check failed: {check_failures(result)} (exit 3)", err=True)
        ctx.exit(EXIT_UNSENT)


def check_failures(result: Report) -> str:
    """Why `--check` fails: lines not ok and rollup gaps, counted."""
    reasons = []
    if result.exceptions:
        reasons.append(f"{len(result.exceptions):,} line(s) not ok")
    if result.rollup_gaps:
        reasons.append(
            f"{len(result.rollup_gaps):,} rollup gap(s), "
            f"{cents(lost_spend_total(result))} USD lost from the spend logs"
        )
    return " and ".join(reasons)


def parse_tolerance(text: str) -> Decimal:
    """A non-negative amount of USD."""
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"--tolerance {text!r} is not an amount: write USD such as 0.01 or 5")
    return amount
