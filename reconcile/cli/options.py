"""Options, settings and output shared by the commands: flag > env var > default."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from reconcile import render
from reconcile.commands import LagoSettings, StateSettings
from reconcile.errors import ConfigError, Interrupted
from reconcile.lago.answers import normalize_base_url
from reconcile.ledger import DEFAULT_SCHEMA
from reconcile.margins import Margins
from reconcile.postgres import Database, parse_database_url
from reconcile.settings import (
    DEFAULT_CHARGE_BY,
    DEFAULT_CHUNK_ROWS,
    ChargeBy,
    parse_charge_by,
    parse_event_code,
)
from reconcile.summary import Plan
from reconcile.window import Window, parse_instant

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done
  1  error (the database or Lago failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
  5  interrupted (SIGINT or SIGTERM): stopped where it was, temporary files
     removed, nothing half-written left
"""

MIGRATE_EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done (--check: the ledger is up to date)
  1  error (the database failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
  3  --check: the ledger is behind (or missing): run `reconcile migrate`
"""

EMULATOR_EXIT_CODES_HELP = """\
\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, its normal end
  1  error (e.g. the port is taken)
  2  usage error; the message names the option and the fix
"""


def source_name(ctx: click.Context, name: str, envvar: str) -> str:
    """How the user gave a setting: as an option or as an environment variable."""
    option = "--" + name.replace("_", "-")
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.ENVIRONMENT:
        return envvar
    if source is ParameterSource.COMMANDLINE:
        return option
    return f"{envvar} (or {option})"


# Read by `main` before click parses anything, so that parsing errors can show tracebacks too.
CUSTOMER_OPTION = click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="ID",
    help="Only this charge-by id (repeat the option for several).",
)

CHUNK_ROWS_OPTION = click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_ROWS,
    show_default=True,
    metavar="N",
    help="Spend-log rows read per chunk: bounds memory, whatever the window's size.",
)

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
            help="The LiteLLM proxy's Postgres, e.g. postgresql://user:pass@host:5432/litellm. "
            "Required.",
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
            help="The Lago billable metric code the events carry. Required.",
        ),
        DB_TIMEOUT_OPTIONS,
        DEBUG_OPTION,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _keep(ctx: click.Context, param: click.Parameter, value: str) -> None:
    ctx.meta[param.name or ""] = value


def DB_TIMEOUT_OPTIONS(function: F) -> F:  # noqa: N802 (a decorator, like the option constants)
    """--db-connect-timeout and --db-statement-timeout, for every Postgres connection."""
    connect = click.option(
        "--db-connect-timeout",
        envvar="RECONCILE_DB_CONNECT_TIMEOUT",
        show_envvar=True,
        default="10s",
        show_default=True,
        metavar="DURATION",
        expose_value=False,
        callback=_keep,
        help="Give up connecting to Postgres after this long (0: never). A URL's own "
        "?connect_timeout= wins.",
    )
    statement = click.option(
        "--db-statement-timeout",
        envvar="RECONCILE_DB_STATEMENT_TIMEOUT",
        show_envvar=True,
        default="15m",
        show_default=True,
        metavar="DURATION",
        expose_value=False,
        callback=_keep,
        help="Postgres cancels a statement running longer (0: never); a read that hears "
        "nothing for this plus the connect timeout takes the connection for dead. A URL's "
        "?options=-c statement_timeout=... wins.",
    )
    return connect(statement(function))


def postgres(ctx: click.Context, raw: str | None, *, setting: str) -> Database:
    """A Postgres URL, with --db-connect-timeout and --db-statement-timeout where it has none."""
    durations = {
        name: parse_duration(ctx.meta.get(name, default), option=source_name(ctx, name, envvar))
        for name, envvar, default in (
            ("db_connect_timeout", "RECONCILE_DB_CONNECT_TIMEOUT", "10s"),
            ("db_statement_timeout", "RECONCILE_DB_STATEMENT_TIMEOUT", "15m"),
        )
    }
    return parse_database_url(raw, setting=setting).with_timeouts(
        connect=durations["db_connect_timeout"], statement=durations["db_statement_timeout"]
    )


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


def window(since: str, until: str) -> Window:
    return Window(parse_instant(since, option="--since"), parse_instant(until, option="--until"))


def settings(
    ctx: click.Context, database_url: str | None, charge_by: str, event_code: str | None
) -> tuple[Database, ChargeBy, str]:
    return (
        postgres(ctx, database_url, setting=source_name(ctx, "database_url", "DATABASE_URL")),
        parse_charge_by(charge_by, source=source_name(ctx, "charge_by", "LAGO_API_CHARGE_BY")),
        parse_event_code(event_code, source=source_name(ctx, "event_code", "LAGO_API_EVENT_CODE")),
    )


EXIT_CODES_RUN_HELP = """\
\b
Exit codes:
  0  every billable row of the window is in Lago (unexplained events are
     reported, not an error: `reconcile report --check` alerts on them)
  1  error (the database or Lago failed); safe to run again
  2  usage or configuration error; the message names the setting and the fix
  3  missing events remain unsent (a dry run, --max-events, a no at the prompt,
     or, for backfill, rows held back as too recent)
  4  another run holds the lock for this database, event code and charge-by
  5  interrupted (SIGINT, SIGTERM, or end of input at the prompt): stopped
     between two batches, what was sent recorded, the run `interrupted`; run it
     again to send the rest (a second signal exits at once, 130 or 143)
"""

DURATION_HELP = """\
\b
DURATION: a number and a unit, s (the default), m, h or d: 90s, 20m, 6h, 1.5d.
"""

ALL_EXIT_CODES_HELP = """\
\b
Exit codes (each command's --help says which it uses):
  0  done
  1  error (the database or Lago failed); safe to run again
  2  usage or configuration error; the message names the setting and the fix
  3  run, backfill: missing events remain unsent (dry run, --max-events, held
     back as too recent by backfill); report --check: a line not ok or a rollup gap;
     migrate --check: the ledger is behind
  4  run, backfill: another run holds the lock of this database, code and charge-by
  5  interrupted (SIGINT, SIGTERM, no answer at the prompt); what was sent is
     recorded; a second signal exits at once with 130 or 143
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, option: str) -> dt.timedelta:
    """`90`, `90s`, `20m`, `1h`, `1d` as a timedelta."""
    found = _DURATION.match(text)
    if not found:
        raise ConfigError(f"{option} {text!r} is not a duration: write e.g. 90s, 20m, 1h or 1d")
    return dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def lago_options(function: F) -> F:
    """--lago-api-base and --lago-api-key (as LiteLLM's), and --lago-retry-budget."""
    base = click.option(
        "--lago-api-base",
        envvar="LAGO_API_BASE",
        show_envvar=True,
        metavar="URL",
        help="Lago's API root, e.g. http://localhost:3000 or https://api.getlago.com. Required.",
    )
    key = click.option(
        "--lago-api-key",
        envvar="LAGO_API_KEY",
        show_envvar=True,
        metavar="KEY",
        help="Lago's API key (prefer the environment variable: options show in `ps`). Required.",
    )
    budget = click.option(
        "--lago-retry-budget",
        envvar="RECONCILE_LAGO_RETRY_BUDGET",
        show_envvar=True,
        default="5m",
        show_default=True,
        metavar="DURATION",
        expose_value=False,
        callback=lambda ctx, _, value: ctx.meta.__setitem__("lago_retry_budget", value),
        help="How long to keep trying while Lago fails (5xx, 429, refused, timed out) before "
        "exiting 1.",
    )
    return base(key(budget(function)))


def state_options(function: F) -> F:
    """--state-database-url and --state-schema: where reconcile keeps its ledger."""
    url = click.option(
        "--state-database-url",
        envvar="RECONCILE_STATE_DATABASE_URL",
        show_envvar=True,
        metavar="URL",
        help="Postgres for reconcile's own ledger.  [default: DATABASE_URL]",
    )
    schema = click.option(
        "--state-schema",
        envvar="RECONCILE_STATE_SCHEMA",
        show_envvar=True,
        default=DEFAULT_SCHEMA,
        show_default=True,
        metavar="NAME",
        help="Schema of reconcile's ledger tables.",
    )
    return url(schema(function))


def matching_options(function: F) -> F:
    """--skew, --max-delay, --longest-request and --settle: how event times relate to rows'."""
    options = [
        click.option(
            "--skew",
            default="2m",
            show_default=True,
            metavar="DURATION",
            help="An event may be this much before its row's endTime (clocks differ).",
        ),
        click.option(
            "--max-delay",
            default="20m",
            show_default=True,
            metavar="DURATION",
            help="...and this much after: LiteLLM's callback can be late by minutes.",
        ),
        click.option(
            "--longest-request",
            default="6h",
            show_default=True,
            metavar="DURATION",
            help="Requests (a long stream) may last this long: rows that started up to this "
            "much before the window are read for the events they own in it.",
        ),
        click.option(
            "--settle",
            default="15m",
            show_default=True,
            metavar="DURATION",
            help="Rows and callback events of the last stretch before now are still arriving: "
            "Lago is never listed past now minus this, and a row is sent only once its "
            "endTime + --max-delay is before it.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def margins(options: Mapping[str, Any]) -> tuple[Margins, dt.timedelta]:
    """The margins and settle delay given by `matching_options`."""
    return (
        Margins(
            skew=parse_duration(options["skew"], option="--skew"),
            max_delay=parse_duration(options["max_delay"], option="--max-delay"),
            longest=parse_duration(options["longest_request"], option="--longest-request"),
        ),
        parse_duration(options["settle"], option="--settle"),
    )


def lago_settings(ctx: click.Context, base: str | None, key: str | None) -> LagoSettings:
    """LAGO_API_BASE and LAGO_API_KEY, checked."""
    if not base:
        raise ConfigError(
            f"{source_name(ctx, 'lago_api_base', 'LAGO_API_BASE')} is not set: give Lago's API "
            "root, e.g. http://localhost:3000 (the same value as LiteLLM's)"
        )
    if not key:
        raise ConfigError(
            f"{source_name(ctx, 'lago_api_key', 'LAGO_API_KEY')} is not set: give Lago's API key "
            "(Lago > Developers > API keys; the same value as LiteLLM's)"
        )
    budget = parse_duration(
        ctx.meta.get("lago_retry_budget", "5m"),
        option=source_name(ctx, "lago_retry_budget", "RECONCILE_LAGO_RETRY_BUDGET"),
    )
    return LagoSettings(
        normalize_base_url(base, setting=source_name(ctx, "lago_api_base", "LAGO_API_BASE")),
        key,
        retry_budget=budget.total_seconds(),
    )


def state_settings(
    ctx: click.Context, url: str | None, schema: str, source: Database
) -> StateSettings:
    """The ledger's database (the spend-log database unless told otherwise) and schema."""
    if not url:
        return StateSettings(source, schema)
    setting = source_name(ctx, "state_database_url", "RECONCILE_STATE_DATABASE_URL")
    return StateSettings(postgres(ctx, url, setting=setting), schema)


def confirmer(*, yes: bool, above: int, lago: str) -> Callable[[Plan], bool]:
    """Show the plan and ask before sending more than `above` events, on a terminal only.

    Cron never blocks: without a terminal on stdin nothing is asked. No answer (end of input,
    Ctrl-C) is a no that raises Interrupted: exit 5, nothing sent.
    """

    def confirm(plan: Plan) -> bool:
        if yes or len(plan.events) <= above or not sys.stdin.isatty():
            return True
        click.echo("\n".join(["", *render.plan_lines(plan), ""]), err=True)
        try:
            return click.confirm(
                f"Send these {len(plan.events):,} events to Lago at {lago}?", err=True
            )
        except click.Abort:  # end of input (Ctrl-D) or Ctrl-C: taken as no
            click.echo(err=True)
            raise Interrupted("no answer at the prompt, taken as no") from None

    return confirm
