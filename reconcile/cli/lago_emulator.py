"""`reconcile lago-emulator`: a local stand-in for Lago's events API, for tests and demos."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable

import click

from reconcile.cli.help import EMULATOR_EXIT_CODES_HELP
from reconcile.cli.options import DEBUG_OPTION, F
from reconcile.errors import ConfigError, Interrupted

log = logging.getLogger(__name__)


def _cannot_listen(error: OSError, host: str, port: int) -> ConfigError | None:
    """The option to fix when the server cannot listen on `host`:`port`; None if no option can."""
    if error.errno == errno.EADDRINUSE:
        return ConfigError(
            f"port {port} is taken on {host}: choose another --port (0 picks a free one), "
            "or stop what listens there"
        )
    if error.errno == errno.EACCES:
        return ConfigError(f"port {port} needs privileges here: choose a --port of 1024 or above")
    if isinstance(error, socket.gaierror):
        return ConfigError(
            f"--host {host!r} does not resolve: give an address of this machine, "
            "e.g. 127.0.0.1 or 0.0.0.0"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"--host {host!r} is no address of this machine: give one it has, "
            "e.g. 127.0.0.1 or 0.0.0.0"
        )
    return None


def _first_n(name: str, help: str) -> Callable[[F], F]:
    """A fault on the first N requests (0: none)."""
    return click.option(name, type=click.IntRange(min=0), default=0, metavar="N", help=help)


@click.command("lago-emulator", epilog=EMULATOR_EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=3000,
    show_default=True,
    help="Port to listen on (Lago's own default); 0 picks a free one.",
)
@click.option(
    "--api-key",
    envvar="LAGO_API_KEY",
    show_envvar=True,
    help="The Bearer key clients must send.  [default: lago-emulator-api-key]",
)
@click.option(
    "--store",
    type=click.Choice(["postgres", "clickhouse"]),
    default="postgres",
    show_default=True,
    help="postgres: duplicates refused (422); clickhouse: every copy kept, as high-usage Lago.",
)
@click.option(
    "--legacy-partial-batches",
    is_flag=True,
    help="Behave as Lago before v1.39: a refused batch still stores its good events.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Wait this long before every answer.",
)
@click.option(
    "--per-page-cap",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Serve at most N events per page, whatever per_page asks.",
)
@_first_n("--rate-limit", "Answer the first N requests 429 with X-RateLimit-* headers.")
@_first_n("--server-errors", "Answer the first N requests 503.")
@_first_n("--drop-connections", "Close the first N connections without answering.")
@DEBUG_OPTION
def lago_emulator(
    host: str,
    port: int,
    api_key: str | None,
    store: str,
    legacy_partial_batches: bool,
    latency: float,
    per_page_cap: int | None,
    rate_limit: int,
    server_errors: int,
    drop_connections: int,
) -> None:
    """Serve an emulator of Lago's events API (lago-api v1.51) until Ctrl-C.

    It answers POST /api/v1/events and /events/batch, GET /api/v1/events (filters,
    pagination) and /events/{transaction_id}, and /health, with Lago's status codes and
    error bodies, keeping events in memory. It also answers the billing listings a report
    reads: GET /api/v1/subscriptions, GET /api/v1/invoices and /invoices/{lago_id}; they
    stay empty here (tests and the demo fill them in Python), so a report against it finds
    no subscription and no invoice. Point LAGO_API_BASE at the URL it prints on stdout.
    Faults can be injected to see how a client copes.

    \b
    Example:
      export LAGO_API_KEY=local-key
      reconcile lago-emulator --port 3000 --latency 0.02 --rate-limit 3 &
      curl -s -H "Authorization: Bearer local-key" localhost:3000/api/v1/events
    """
    # Loaded here, not at import: production commands never load the emulator.
    from reconcile.lago_emulator import DEFAULT_API_KEY, LagoEmulator  # noqa: PLC0415

    emulator = LagoEmulator(
        host=host,
        port=port,
        api_key=DEFAULT_API_KEY if api_key is None else api_key,
        store=store,
        legacy_partial_batches=legacy_partial_batches,
    )
    emulator.faults.latency(latency)
    emulator.faults.per_page_cap(per_page_cap)
    emulator.faults.rate_limit(rate_limit)
    emulator.faults.server_error(server_errors)
    emulator.faults.drop_connections(drop_connections)
    try:
        emulator.start()
    except OSError as error:
        if (problem := _cannot_listen(error, host, port)) is not None:
            raise problem from error
        raise
    # Ctrl-C stops it even where SIGINT came ignored (a script's background job, as CI runs).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # from the first line out: a signal may come as soon as the URL is read
        click.echo(emulator.url)
        log.info(
            "Lago emulator (%s store) listening on %s; Ctrl-C or SIGTERM stops it",
            store, emulator.url,
        )  # fmt: skip
        threading.Event().wait()
    except (KeyboardInterrupt, Interrupted):  # its normal end: exit 0
        log.info("Lago emulator stopped")
    finally:
        emulator.stop()
