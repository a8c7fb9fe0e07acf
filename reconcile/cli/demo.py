"""`reconcile demo`: the whole job on an embedded Postgres and the Lago emulator, nothing else."""

from __future__ import annotations

import datetime as dt
import json

import click

from reconcile import render
from reconcile.cli.help import EXIT_CODES_HELP
from reconcile.cli.options import DEBUG_OPTION
from reconcile.errors import ReconcileError
from reconcile.report.build import run_report
from reconcile.report.text import summary_text
from reconcile.settings import DEFAULT_CHARGE_BY, ChargeBy
from reconcile.window import UTC


@click.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="The UTC day of traffic to generate.  [default: yesterday]",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Spend-log rows to generate.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same rows.")
@click.option(
    "--charge-by",
    type=click.Choice([mode.value for mode in ChargeBy]),
    default=DEFAULT_CHARGE_BY.value,
    show_default=True,
    help="Which id to bill.",
)
@click.option(
    "--delivered",
    type=click.FloatRange(0, 1),
    default=0.95,
    show_default=True,
    help="Share of billable requests LiteLLM's live callback got into Lago.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Backfilled events to print.",
)
@DEBUG_OPTION
def demo(
    day: dt.datetime | None, rows: int, seed: int, charge_by: str, delivered: float, sample: int
) -> None:
    """Run the whole job on an embedded default: no LiteLLM, no Lago, no Postgres needed.

    Starts a private PostgreSQL server (pgserver, from PyPI), builds LiteLLM's real schema
    from the migrations in litellm-proxy-extras and writes a day of realistic proxy traffic
    (cache hits, failures with and without cost, rows without a customer, awkward ids, tiny
    costs). It starts the Lago emulator holding the events LiteLLM's live callback would have
    got there (random ids, Lago's reception times), with some lost, then runs the nightly
    `reconcile run`: it finds and backfills exactly the lost ones. A second run, half an hour
    later, finds nothing left to do; `reconcile report` over the day then shows every
    customer billed. Last, it checks the claim against what Lago holds: the requests the
    callback lost, the ones found missing and the ones backfilled are the same, and every
    billable request is billed once (exit 1 if not). Summaries, the report and the check go
    to stderr, a sample of the backfilled events to stdout. Everything is deleted on exit.

    \b
    Example:
      reconcile demo --rows 50000 --charge-by team_id --delivered 0.9
    """
    from reconcile.demo.run import run_demo  # noqa: PLC0415 (imports the demo-only dependencies)

    result = run_demo(
        day=(day.date() if day else dt.datetime.now(UTC).date() - dt.timedelta(days=1)),
        rows=rows,
        seed=seed,
        charge_by=ChargeBy(charge_by),
        delivered=delivered,
    )
    for number, summary in enumerate(result.runs, start=1):
        click.echo(f"\nnightly run {number}\n", err=True)
        click.echo(render.run_summary(summary, lago=result.lago_url), err=True)
        report = run_report(summary, source="the demo database", lago=result.lago_url)
        click.echo("\n" + summary_text(report), err=True)
    click.echo(
        "\nreconcile report for the day, after both runs, per customer, in USD\n"
        "(the top 10 by spend; `reconcile report` gives every line and every digit)\n",
        err=True,
    )
    click.echo("\n".join(render.report_top(result.report)), err=True)
    proof = result.proof
    checks = [
        ("billable requests", f"{proof.billable:,}"),
        ("lost by LiteLLM's live callback", f"{proof.lost:,}"),
        ("found missing by the first nightly run", f"{proof.found_missing:,}"),
        ("backfilled by reconcile", f"{proof.backfilled:,}"),
        ("the same requests as the lost ones", _yes(proof.same_requests)),
        ("every billable request billed exactly once", _yes(proof.billed_once)),
    ]
    click.echo("\nchecked against what Lago holds:\n", err=True)
    click.echo("\n".join(render.table([[label, value] for label, value in checks])), err=True)
    first = result.runs[0] if result.runs else None
    if first is not None and first.plan is not None and sample:
        shown = first.plan.sample[:sample]
        click.echo(
            f"\nstdout: {len(shown)} of the {first.plan.count:,} events the first run "
            "backfilled, one JSON object per line, as sent to Lago",
            err=True,
        )
        for event in shown:
            click.echo(json.dumps(event, ensure_ascii=False))
    held = proof.lost == proof.found_missing == proof.backfilled
    if not (held and proof.same_requests and proof.billed_once):
        raise ReconcileError("the demo's check failed: see the table above (a bug: report it)")


def _yes(value: bool) -> str:
    return "yes" if value else "NO"
