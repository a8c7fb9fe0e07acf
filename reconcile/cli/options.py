"""Options, settings and output shared by the commands: flag > env var > default."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click
from click.core import ParameterSource

from reconcile.errors import ConfigError
from reconcile.postgres import Database, parse_database_url
from reconcile.settings import DEFAULT_CHARGE_BY, ChargeBy, parse_charge_by, parse_event_code
from reconcile.window import Window, parse_instant

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done
  1  error (the database or Lago failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
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


def window(since: str, until: str) -> Window:
    return Window(parse_instant(since, option="--since"), parse_instant(until, option="--until"))


def settings(
    ctx: click.Context, database_url: str | None, charge_by: str, event_code: str | None
) -> tuple[Database, ChargeBy, str]:
    return (
        parse_database_url(database_url, setting=source_name(ctx, "database_url", "DATABASE_URL")),
        parse_charge_by(charge_by, source=source_name(ctx, "charge_by", "LAGO_API_CHARGE_BY")),
        parse_event_code(event_code, source=source_name(ctx, "event_code", "LAGO_API_EVENT_CODE")),
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
