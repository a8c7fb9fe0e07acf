"""`reconcile events`: the Lago events a window of spend logs calls for."""

from __future__ import annotations

import click

from reconcile import commands, render
from reconcile.cli.help import EXIT_CODES_HELP
from reconcile.cli.options import (
    CHUNK_ROWS_OPTION,
    settings,
    source_options,
    window,
    window_options,
)
from reconcile.cli.output import open_output


@click.command(epilog=EXIT_CODES_HELP)
@window_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice([fmt.value for fmt in commands.EventFormat]),
    default=commands.EventFormat.JSONL.value,
    show_default=True,
    help="JSON lines (one Lago event object each) or CSV (properties as columns).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    metavar="FILE",
    help="Write here instead of stdout (written whole or not at all).",
)
@CHUNK_ROWS_OPTION
@source_options
@click.pass_context
def events(
    ctx: click.Context,
    since: str,
    until: str,
    output_format: str,
    output: str,
    chunk_rows: int,
    database_url: str | None,
    charge_by: str,
    event_code: str | None,
) -> None:
    """Write the Lago events a window of spend logs calls for.

    One event per billable row: status success (or none, whatever the row's date: LiteLLM
    wrote none before May 2025) and a non-empty charge-by id. Rows that are not billable are
    counted by class on stderr, never dropped silently. The output is what Lago should hold
    for the window; it is the same, byte for byte, every time the same rows are read.

    \b
    Example:
      export DATABASE_URL=postgresql://reader:secret@db:5432/litellm
      export LAGO_API_EVENT_CODE=openai_tokens LAGO_API_CHARGE_BY=team_id
      reconcile events --since 2026-11-01 --until 2026-11-02 -o events.jsonl
    """
    database, mode, code = settings(ctx, database_url, charge_by, event_code)
    span = window(since, until)
    with open_output(output) as sink:
        summary = commands.events(
            database,
            window=span,
            charge_by=mode,
            code=code,
            sink=sink,
            output_format=commands.EventFormat(output_format),
            chunk_rows=chunk_rows,
        )
    click.echo(render.events_summary(summary), err=True)
