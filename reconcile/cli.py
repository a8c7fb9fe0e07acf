"""The `reconcile` command line: thin glue from options and env vars to `reconcile.commands`."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import secrets
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click
from click.core import ParameterSource

from reconcile import commands, render
from reconcile.errors import EXIT_CONFIG, EXIT_ERROR, ConfigError, ReconcileError
from reconcile.postgres import Database, parse_database_url
from reconcile.settings import DEFAULT_CHARGE_BY, ChargeBy, parse_charge_by, parse_event_code
from reconcile.spendlogs.read import DEFAULT_CHUNK_ROWS
from reconcile.window import UTC, Window, parse_instant

log = logging.getLogger("reconcile")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done
  1  error (the database or Lago failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(package_name="reconcile", prog_name="reconcile")
def cli() -> None:
    """Reconcile LiteLLM spend logs with Lago usage events.

    Reads the per-request spend logs of a LiteLLM proxy (its Postgres table
    "LiteLLM_SpendLogs") and turns them into the Lago events that bill them, with stable
    transaction ids, so that what Lago holds can be checked and completed exactly once.

    Configuration uses the same environment variables as LiteLLM's Lago integration
    (DATABASE_URL, LAGO_API_EVENT_CODE, LAGO_API_CHARGE_BY); every one can also be given as
    an option, and the option wins. Add --debug to any command for tracebacks and debug logs.
    """


def _source_name(ctx: click.Context, name: str, envvar: str) -> str:
    """How the user gave a setting: as an option or as an environment variable."""
    option = "--" + name.replace("_", "-")
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.ENVIRONMENT:
        return envvar
    if source is ParameterSource.COMMANDLINE:
        return option
    return f"{envvar} (or {option})"


# Read by `main` before click parses anything, so that parsing errors can show tracebacks too.
DEBUG_OPTION = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    help="Show tracebacks and debug logs (or set RECONCILE_DEBUG=1).",
)


def source_options(function: F) -> F:
    """--database-url, --charge-by, --event-code, --debug: what every spend-log command needs."""
    options = [
        click.option(
            "--database-url",
            envvar="DATABASE_URL",
            show_envvar=True,
            metavar="URL",
            help="The LiteLLM proxy's Postgres, e.g. postgresql://user:pass@host:5432/litellm.",
        ),
        click.option(
            "--charge-by",
            envvar="LAGO_API_CHARGE_BY",
            show_envvar=True,
            default=DEFAULT_CHARGE_BY.value,
            show_default=True,
            metavar="|".join(mode.value for mode in ChargeBy),
            help="Which id a Lago subscription is keyed on, as in LiteLLM.",
        ),
        click.option(
            "--event-code",
            envvar="LAGO_API_EVENT_CODE",
            show_envvar=True,
            metavar="CODE",
            help="The Lago billable metric code the events carry.",
        ),
        DEBUG_OPTION,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def window_options(function: F) -> F:
    """--since and --until: the half-open window on "startTime"."""
    since = click.option(
        "--since",
        required=True,
        metavar="TIME",
        help='Start of the window on "startTime", included: YYYY-MM-DD or ISO-8601 '
        "(UTC if no offset).",
    )
    until = click.option(
        "--until",
        required=True,
        metavar="TIME",
        help="End of the window, excluded; same formats.",
    )
    return since(until(function))


def _window(since: str, until: str) -> Window:
    return Window(parse_instant(since, option="--since"), parse_instant(until, option="--until"))


def _settings(
    ctx: click.Context, database_url: str | None, charge_by: str, event_code: str | None
) -> tuple[Database, ChargeBy, str]:
    return (
        parse_database_url(database_url, setting=_source_name(ctx, "database_url", "DATABASE_URL")),
        parse_charge_by(charge_by, source=_source_name(ctx, "charge_by", "LAGO_API_CHARGE_BY")),
        parse_event_code(event_code, source=_source_name(ctx, "event_code", "LAGO_API_EVENT_CODE")),
    )


@contextlib.contextmanager
def open_output(path: str) -> Iterator[BinaryIO]:
    """Stdout for "-"; otherwise a file that only appears, whole, once writing succeeded."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"-o {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise ConfigError(f"-o {path}: directory {target.parent} does not exist; create it first")
    if target.exists() and not target.is_file():
        # A device or a pipe (/dev/null, a FIFO): write straight into it, never replace it.
        with target.open("wb") as sink:
            yield sink
        return
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        # Created with the usual permissions (0666 less the umask), unlike a mkstemp file.
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as sink:
            yield sink
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@cli.command(epilog=EXIT_CODES_HELP)
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
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=100),
    default=DEFAULT_CHUNK_ROWS,
    show_default=True,
    help="Rows read per chunk: bounds memory, whatever the window's size.",
)
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

    One event per billable row: status success (or none, on rows older than May 2025) and a
    non-empty charge-by id. Rows that are not billable are counted by class on stderr, never
    dropped silently. The output is what Lago should hold for the window; it is the same,
    byte for byte, every time the same rows are read.

    \b
    Example:
      export DATABASE_URL=postgresql://reader:secret@db:5432/litellm
      export LAGO_API_EVENT_CODE=openai_tokens LAGO_API_CHARGE_BY=team_id
      reconcile events --since 2026-11-01 --until 2026-11-02 -o events.jsonl
    """
    database, mode, code = _settings(ctx, database_url, charge_by, event_code)
    window = _window(since, until)
    with open_output(output) as sink:
        summary = commands.events(
            database,
            window=window,
            charge_by=mode,
            code=code,
            sink=sink,
            output_format=commands.EventFormat(output_format),
            chunk_rows=chunk_rows,
        )
    click.echo(render.events_summary(summary), err=True)


@cli.command(epilog=EXIT_CODES_HELP)
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


def _debug_requested(args: list[str]) -> bool:
    options = args[: args.index("--")] if "--" in args else args
    return "--debug" in options or os.environ.get("RECONCILE_DEBUG", "") not in ("", "0")


def _configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    for noisy in ("httpx", "httpcore", "asyncio", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(args: list[str] | None = None) -> None:
    """Run the CLI and exit with its documented code; errors are one line unless --debug."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = _debug_requested(argv)
    _configure_logging(debug)
    try:
        code = cli.main(argv, prog_name="reconcile", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        click.echo("reconcile: interrupted", err=True)
        code = EXIT_ERROR
    except ReconcileError as error:
        if debug:
            traceback.print_exc()
        click.echo(f"reconcile: error: {error}", err=True)
        code = error.exit_code
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_ERROR
    except Exception as error:
        if debug:
            raise
        click.echo(
            f"reconcile: internal error: {type(error).__name__}: {error} "
            "(run again with --debug for the traceback)",
            err=True,
        )
        code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_CONFIG", "cli", "main"]
