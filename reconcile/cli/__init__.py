"""The `reconcile` command line: thin glue from options and env vars to `reconcile.commands`."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click
import pyarrow as pa

from reconcile.cli import demo, events, lago_emulator, reconciling, report
from reconcile.cli.help import ALL_EXIT_CODES_HELP, DURATION_HELP
from reconcile.errors import EXIT_ERROR, EXIT_INTERRUPTED, Interrupted, ReconcileError
from reconcile.money import wide
from reconcile.stopping import terminable


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reconcile", prog_name="reconcile")
def cli() -> None:
    """Reconcile LiteLLM spend logs with Lago usage events.

    Reads the per-request spend logs of a LiteLLM proxy (its Postgres table
    "LiteLLM_SpendLogs") and turns them into the Lago events that bill them, with stable
    transaction ids, so that what Lago holds can be checked and completed exactly once.

    Configuration uses the same environment variables as LiteLLM's Lago integration
    (DATABASE_URL, LAGO_API_BASE, LAGO_API_KEY, LAGO_API_EVENT_CODE, LAGO_API_CHARGE_BY);
    every one can also be given as an option, and the option wins. Below: every variable any
    command reads. Add --debug to any command for tracebacks and debug logs.
    """


cli.add_command(events.events)
cli.add_command(reconciling.migrate)
cli.add_command(reconciling.backfill)
cli.add_command(reconciling.run)
cli.add_command(report.report)
cli.add_command(demo.demo)
cli.add_command(lago_emulator.lago_emulator)


def _document(group: click.Group) -> None:
    """Help that stays true by construction, from the commands' own options.

    The DURATION syntax goes wherever a DURATION option is; the top level lists every
    environment variable any command reads, with its option in each command.
    """
    variables: dict[str, dict[str, list[str]]] = {"RECONCILE_DEBUG": {"--debug": ["all"]}}
    for name, command in sorted(group.commands.items()):
        options = [param for param in command.params if isinstance(param, click.Option)]
        if any(option.metavar == "DURATION" for option in options):
            command.epilog = DURATION_HELP + "\n" + (command.epilog or "")
        for option in options:
            if isinstance(option.envvar, str):
                by_option = variables.setdefault(option.envvar, {})
                by_option.setdefault(option.opts[0], []).append(name)
    width = max(len(envvar) for envvar in variables)
    listed = [
        f"  {envvar:<{width}}  "
        + ", ".join(f"{opt} ({', '.join(names)})" for opt, names in by_option.items())
        for envvar, by_option in sorted(variables.items())
    ]
    title = "Environment variables (each also an option; the option wins):"
    group.epilog = "\n".join([ALL_EXIT_CODES_HELP, "\b", title, *listed])


_document(cli)


def _debug_requested(args: list[str]) -> bool:
    options = args[: args.index("--")] if "--" in args else args
    return "--debug" in options or os.environ.get("RECONCILE_DEBUG", "") not in ("", "0")


def _configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    for noisy in ("httpx", "httpcore", "asyncio", "pgserver", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(args: list[str] | None = None) -> None:
    """Run the CLI and exit with its documented code; errors are one line unless --debug."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = _debug_requested(argv)
    _configure_logging(debug)
    # Arrow's default pool (mimalloc) keeps what it freed: a pass over many slices would hold
    # the peak of the busiest one for good. The C library's allocator gives it back.
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        with wide(), terminable():  # exact amounts; SIGTERM unwinds like Ctrl-C
            code = cli.main(argv, prog_name="reconcile", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:  # Ctrl-C in a command that does not stop by itself
        click.echo("reconcile: interrupted by SIGINT", err=True)  # click ended the ^C line
        code = EXIT_INTERRUPTED
    except Interrupted as error:  # not an error: said as what happened
        click.echo(f"reconcile: {error}", err=True)
        code = error.exit_code
    except Exception as error:
        cause = _interruption(error)
        if cause is None:
            code = _failed(error, debug)
        else:  # a cleanup the signal cut short failed in turn: the signal is what happened
            click.echo(f"reconcile: {cause}", err=True)
            code = cause.exit_code
    sys.exit(code if isinstance(code, int) else 0)


def _interruption(error: BaseException) -> Interrupted | None:
    """The Interrupted an error was raised while handling, if any (a rollback that failed)."""
    seen: set[int] = set()
    cause = error.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Interrupted):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None


def _failed(error: Exception, debug: bool) -> int:
    """Say an error in one line (a traceback with --debug); its exit code."""
    if isinstance(error, ReconcileError):
        if debug:
            traceback.print_exception(error)
        click.echo(f"reconcile: error: {error}", err=True)
        return error.exit_code
    if isinstance(error, BrokenPipeError):
        # The reader of stdout went away (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    if debug:
        raise error
    click.echo(
        f"reconcile: internal error: {type(error).__name__}: {error} "
        "(run again with --debug for the traceback)",
        err=True,
    )
    return EXIT_ERROR
