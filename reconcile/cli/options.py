"""Options, settings and output shared by the commands: flag > env var > default."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from reconcile.errors import ConfigError
from reconcile.margins import Margins
from reconcile.postgres import Database, parse_database_url
from reconcile.settings import (
    DEFAULT_CHARGE_BY,
    DEFAULT_CHUNK_ROWS,
    ChargeBy,
    parse_charge_by,
    parse_event_code,
)
from reconcile.window import Window, parse_instant

F = TypeVar("F", bound=Callable[..., Any])


def _keep(ctx: click.Context, param: click.Parameter, value: str) -> None:
    ctx.meta[param.name or ""] = value


def env_option(name: str, envvar: str, *, metavar: str, help: str, **more: Any) -> Callable[[F], F]:
    """An option also read from `envvar`, which --help names."""
    return click.option(name, envvar=envvar, show_envvar=True, metavar=metavar, help=help, **more)


def kept_duration_option(name: str, envvar: str, *, default: str, help: str) -> Callable[[F], F]:
    """A DURATION option (and `envvar`) kept in `ctx.meta` under its name, parsed where used."""
    return env_option(
        name, envvar, metavar="DURATION", help=help, default=default, show_default=True,
        expose_value=False, callback=_keep,
    )  # fmt: skip


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
        env_option(
            "--database-url",
            "DATABASE_URL",
            metavar="URL",
            help="The LiteLLM proxy's Postgres, e.g. postgresql://user:pass@host:5432/litellm. "
            "Required.",
        ),
        env_option(
            "--charge-by",
            "LAGO_API_CHARGE_BY",
            default=DEFAULT_CHARGE_BY.value,
            show_default=True,
            metavar="|".join(mode.value for mode in ChargeBy),
            help="Which id a Lago subscription is keyed on, as in LiteLLM.",
        ),
        env_option(
            "--event-code",
            "LAGO_API_EVENT_CODE",
            metavar="CODE",
            help="The Lago billable metric code the events carry. Required.",
        ),
        DB_TIMEOUT_OPTIONS,
        DEBUG_OPTION,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def DB_TIMEOUT_OPTIONS(function: F) -> F:  # noqa: N802 (a decorator, like the option constants)
    """--db-connect-timeout and --db-statement-timeout, for every Postgres connection."""
    connect = kept_duration_option(
        "--db-connect-timeout",
        "RECONCILE_DB_CONNECT_TIMEOUT",
        default="10s",
        help="Give up connecting to Postgres after this long (0: never). A URL's own "
        "?connect_timeout= wins.",
    )
    statement = kept_duration_option(
        "--db-statement-timeout",
        "RECONCILE_DB_STATEMENT_TIMEOUT",
        default="15m",
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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, option: str) -> dt.timedelta:
    """`90`, `90s`, `20m`, `1h`, `1d` as a timedelta."""
    found = _DURATION.match(text)
    if not found:
        raise ConfigError(f"{option} {text!r} is not a duration: write e.g. 90s, 20m, 1h or 1d")
    return dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


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
