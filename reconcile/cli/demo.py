"""`reconcile demo`: the whole job on an embedded Postgres, nothing else needed."""

from __future__ import annotations

import datetime as dt
import io
import sys

import click

from reconcile import render
from reconcile.cli.options import DEBUG_OPTION, EXIT_CODES_HELP, open_output
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
    "--sample",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Events to print on stdout.",
)
@click.option(
    "-o", "--output", default=None, metavar="FILE", help="Also write every event (JSON lines) here."
)
@DEBUG_OPTION
def demo(
    day: dt.datetime | None,
    rows: int,
    seed: int,
    charge_by: str,
    sample: int,
    output: str | None,
) -> None:
    """Run the whole job on an embedded default: no LiteLLM, no Lago, no Postgres needed.

    Starts a private PostgreSQL server (pgserver, from PyPI), builds LiteLLM's real schema
    from the migrations in litellm-proxy-extras, writes a day of realistic proxy traffic
    (cache hits, failures with and without cost, rows without a customer, awkward ids, tiny
    costs) and runs `reconcile events` over it. The summary goes to stderr, a sample of the
    events to stdout. Everything is deleted on exit.

    \b
    Example:
      reconcile demo --rows 50000 --charge-by team_id -o events.jsonl
    """
    from reconcile.demo.run import run_demo  # noqa: PLC0415 (imports the demo-only dependencies)

    buffer = io.BytesIO()
    result = run_demo(
        day=(day.date() if day else dt.datetime.now(UTC).date() - dt.timedelta(days=1)),
        rows=rows,
        seed=seed,
        charge_by=ChargeBy(charge_by),
        sink=buffer,
    )
    click.echo(render.events_summary(result.events), err=True)
    lines = buffer.getvalue().splitlines(keepends=True)
    sys.stdout.buffer.write(b"".join(lines[:sample]))
    if output is not None:
        with open_output(output) as sink:
            sink.write(buffer.getvalue())
        click.echo(f"all {len(lines):,} events are in {output}", err=True)
