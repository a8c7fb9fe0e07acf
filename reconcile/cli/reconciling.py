"""`reconcile migrate`, `backfill` and `run`: the ledger, a window on demand, the nightly job."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconcile import commands, queries, render
from reconcile.cli.help import EXIT_CODES_RUN_HELP, MIGRATE_EXIT_CODES_HELP
from reconcile.cli.options import (
    CHUNK_ROWS_OPTION,
    CUSTOMER_OPTION,
    DB_TIMEOUT_OPTIONS,
    DEBUG_OPTION,
    margins,
    matching_options,
    parse_duration,
    postgres,
    settings,
    source_options,
    window,
    window_options,
)
from reconcile.cli.output import STDOUT, open_output
from reconcile.cli.progress import progress
from reconcile.cli.targets import (
    confirmer,
    lago_options,
    lago_settings,
    state_options,
    state_settings,
)
from reconcile.cli.workers import local_workers
from reconcile.errors import EXIT_UNSENT, ConfigError
from reconcile.postgres import Database
from reconcile.report.build import absent_message, run_report
from reconcile.report.formats import summary_text
from reconcile.results import RunSummary
from reconcile.settings import JobSettings
from reconcile.stopping import stopping
from reconcile.window import UTC, Window, parse_instant

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class _Common:
    """The options `backfill` and `run` share, as click passed them."""

    dry_run: bool
    max_events: int | None
    yes: bool
    confirm_above: int
    skew: str
    max_delay: str
    longest_request: str
    settle: str
    chunk_rows: int
    slice: str
    restart: bool
    progress: bool | None
    workers: int
    part: str | None
    lease: str
    join_run: int | None
    lago_api_base: str | None
    lago_api_key: str | None
    state_database_url: str | None
    state_schema: str
    database_url: str | None
    charge_by: str
    event_code: str | None


def _common_options(function: F) -> F:
    options = [
        click.option(
            "--dry-run",
            is_flag=True,
            help="Show what would be sent and send nothing (exit 3 if anything is missing).",
        ),
        click.option(
            "--max-events",
            type=click.IntRange(min=0),
            default=None,
            metavar="N",
            help="Send at most N events this time, the earliest first (exit 3 if more remain).",
        ),
        click.option(
            "--yes", is_flag=True, help="Do not ask before a large backfill on a terminal."
        ),
        click.option(
            "--slice",
            "slice",
            default="1h",
            show_default=True,
            envvar="RECONCILE_SLICE",
            show_envvar=True,
            metavar="DURATION",
            help="Reconcile the window this much time at a time, each slice read, listed, "
            "matched, sent and committed to the ledger before the next: memory holds a slice "
            "and its margins, not the window.",
        ),
        click.option(
            "--restart",
            is_flag=True,
            help="Start the window over even if the last run over it was cut short (by "
            "default the same command over the same window resumes it from its last "
            "committed slice).",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1, max=64),
            default=1,
            show_default=True,
            envvar="RECONCILE_WORKERS",
            show_envvar=True,
            metavar="N",
            help="Share the window among N processes on this machine, workers of one run: "
            "it is cut into parts (--part), each claimed by one worker at a time. Ctrl-C or "
            "an error here stops them all; the run is recorded with its reason.",
        ),
        click.option(
            "--part",
            default=None,
            envvar="RECONCILE_PART",
            show_envvar=True,
            metavar="DURATION",
            help="Cut the window into parts this long (a multiple of --slice, on the same "
            "grid), each leased to one worker at a time; any process running the same command "
            "with the same settings joins the run as a worker (a Kubernetes Indexed Job's "
            "pods). Default: one part, or a day with --workers.",
        ),
        click.option(
            "--lease",
            default="60s",
            show_default=True,
            envvar="RECONCILE_LEASE",
            show_envvar=True,
            metavar="DURATION",
            help="How long a worker's claim on a part holds without its heartbeat (renewed "
            "every third of it): a killed worker's part is claimed again after this.",
        ),
        click.option(  # how --workers starts its processes: on the run it is in, and no other
            "--join-run", type=click.IntRange(min=1), default=None, hidden=True
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="A live progress bar (slices, rows, events, ETA); default: on a terminal. "
            "Without it, one INFO line per slice.",
        ),
        click.option(
            "--confirm-above",
            type=click.IntRange(min=0),
            default=1000,
            show_default=True,
            metavar="N",
            help="On a terminal, ask before sending more than N events.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return matching_options(
        lago_options(state_options(source_options(CHUNK_ROWS_OPTION(function))))
    )


@click.command(epilog=MIGRATE_EXIT_CODES_HELP)
@click.option(
    "--print-sql",
    is_flag=True,
    help="Print the SQL of every migration, from an empty ledger, instead of running it "
    "(Alembic's offline mode: one transaction, for a DBA to review or apply with psql).",
)
@click.option(
    "--from-revision",
    metavar="REVISION",
    help="With --print-sql: only the migrations after REVISION, the ledger's current one "
    "(`migrate --check` names it), for a ledger that exists already.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 3 when the ledger is behind (migrations to apply), 0 when up "
    "to date. Needs only read access.",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The LiteLLM proxy's Postgres: the ledger goes there unless told otherwise.",
)
@state_options
@DB_TIMEOUT_OPTIONS
@DEBUG_OPTION
@click.pass_context
def migrate(
    ctx: click.Context,
    print_sql: bool,
    from_revision: str | None,
    check: bool,
    database_url: str | None,
    state_database_url: str | None,
    state_schema: str,
) -> None:
    """Create or update reconcile's own tables (its ledger); safe to run again.

    The tables live in a schema of their own (litellm_reconcile by default) of the LiteLLM
    database, or of --state-database-url. LiteLLM's tables are never touched. The migrations
    are Alembic's (`upgrade head`, its version table in that schema), applied in one
    transaction under a lock, so concurrent runs take turns. A ledger made by a release before
    Alembic is recognised and stamped with the revision it matches, then upgraded.

    \b
    Example:
      reconcile migrate                # as a role that may create the schema
      reconcile migrate --print-sql    # what it runs, for a DBA to review or apply
      reconcile migrate --check        # before a deploy: exit 3 if behind
      reconcile migrate --print-sql --from-revision 002_server_identity_and_coverage
    """
    if from_revision is not None and not print_sql:
        raise click.UsageError("--from-revision goes with --print-sql")
    if print_sql and check:
        raise click.UsageError("--check and --print-sql do not go together: choose one")
    if print_sql:
        with open_output(STDOUT) as sink:
            sink.write(commands.migration_sql(state_schema, from_revision).encode())
        return
    setting = "RECONCILE_STATE_DATABASE_URL" if state_database_url else "DATABASE_URL"
    database = postgres(ctx, state_database_url or database_url, setting=setting)
    state = commands.StateSettings(database, state_schema)
    schema = queries.schema_shown(state_schema)
    if check:
        behind = commands.pending_migrations(state)
        current = commands.ledger_revision(state)
        at = f"at revision {current}" if current else "without a ledger"
        start = current
        if current is None and (legacy := commands.legacy_ledger_revision(state)):
            at = f"with a ledger made by a release before Alembic (matching {legacy}, not stamped)"
            start = legacy
        if behind:
            script = f"--print-sql --from-revision {start}" if start else "--print-sql"
            click.echo(
                f"{database}: schema {schema} is behind, {at}: {', '.join(behind)} to "
                f"apply; run `reconcile migrate` (or have a DBA apply `reconcile migrate "
                f"{script}`) (exit 3)",
                err=True,
            )
            ctx.exit(EXIT_UNSENT)
        click.echo(f"{database}: schema {schema} is up to date, {at}", err=True)
        return
    migrated = commands.migrate(state)
    done = (
        [f"stamped {migrated.stamped} (a ledger made before Alembic)"] if migrated.stamped else []
    )
    if migrated.applied:
        done.append(f"updated ({', '.join(migrated.applied)})")
    click.echo(f"{database}: schema {schema} {', '.join(done) or 'already up to date'}", err=True)


@click.command(epilog=EXIT_CODES_RUN_HELP)
@window_options
@CUSTOMER_OPTION
@_common_options
@click.pass_context
def backfill(
    ctx: click.Context, /, since: str, until: str, customers: tuple[str, ...], **options: Any
) -> None:
    """Send Lago the events a window of spend logs calls for and Lago lacks, exactly once.

    Reads the window's spend logs, lists Lago's events of the window (and its margins),
    matches each billable row to an event (by transaction id, or, for LiteLLM's own live
    callback, by subscription, model, tokens, cost and time) and sends the missing ones with
    stable transaction ids: running it again never sends anything twice. Everything is
    recorded in the ledger (see `reconcile migrate`).

    The window goes by --slice (an hour by default): each slice read, listed, matched, sent
    and committed to the ledger before the next, so memory holds a slice, not the window. A
    run cut short (kill -9, Ctrl-C, a failure) is resumed by the same command over the same
    window from its last committed slice; --restart starts over.

    With --workers N (or --part), the window is cut into parts leased to workers: N processes
    here, or any process running the same command and settings (a Kubernetes Indexed Job's
    pods, cron/reconcile-backfill-indexed-job.yaml) joins the run; a dead worker's part is
    claimed again once its --lease expires (at once if it was a process of this machine).

    \b
    Example:
      reconcile backfill --since 2026-11-01 --until 2026-11-08 --dry-run
      reconcile backfill --since 2026-11-01 --until 2026-11-08 --customer cust_42 --yes
      reconcile backfill --since 2026-10-01 --until 2026-11-01 --workers 4
    """
    common = _Common(**options)
    job = _job(ctx, common, "backfill", window(since, until), frozenset(customers))
    source, lago, state = _targets(ctx, common)
    confirm = confirmer(yes=common.yes, above=common.confirm_above, lago=lago.shown)
    if job.part is not None:
        confirm = None  # a run in parts is shared by workers: nobody to ask
    if common.workers > 1 and job.max_events is not None and not job.dry_run:
        raise ConfigError(
            "--max-events caps one process's sending, and --workers shares the window among "
            "several: drop one of them"
        )
    with (
        local_workers(common.workers, job.part) as workers,
        stopping() as stop,  # SIGINT, SIGTERM: exit 5
        progress(common.progress) as tell,
    ):
        summary = commands.backfill(
            source, lago, state, job, confirm=confirm, stop=stop, progress=tell,
            entered=workers.start, leaving=workers.stop,
        )  # fmt: skip
    summary = _whole_run(summary, state, workers.codes)
    _finish(ctx, summary, source, lago.shown, workers.codes)


@click.command(epilog=EXIT_CODES_RUN_HELP)
@click.option(
    "--since",
    metavar="TIME",
    default=None,
    help="Where the first run starts (default: a day before now minus --settle); after an "
    "outage longer than --retention-days, where to resume (once the rest is backfilled).",
)
@click.option(
    "--lookback",
    default="1d",
    show_default=True,
    metavar="DURATION",
    help="Start this long before where the last full coverage ended, for late rows.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Refuse windows older than this: LiteLLM may have deleted those rows.",
)
@_common_options
@click.pass_context
def run(
    ctx: click.Context,
    /,
    since: str | None,
    lookback: str,
    retention_days: int,
    **options: Any,
) -> None:
    """The nightly job: reconcile everything since the last full coverage.

    The window runs from where the last full coverage ended (the last run that sent every
    settled row; rows held back as too recent do not move it on) minus --lookback (to catch
    rows written late) to now minus --settle; the first run starts at --since, or a day back.
    Then it does what `reconcile backfill` does for that window, slice by slice. One run at a
    time per database, event code and charge-by: the same command joins the run under way as
    a worker, another one exits 4. See cron/ for crontab, systemd and Kubernetes schedules.

    \b
    Example:
      reconcile migrate && reconcile run
    """
    common = _Common(**options)
    job = _job(ctx, common, "run", _PLACEHOLDER, frozenset())  # its window: chosen by the run
    lookback_given = parse_duration(lookback, option="--lookback")
    if lookback_given < job.margins.longest:
        raise ConfigError(
            f"--lookback {lookback} is shorter than --longest-request "
            f"{common.longest_request}: a request still running when a night ends would start "
            "before the next night's window and never be billed; give a --lookback of at least "
            "--longest-request"
        )
    schedule = commands.Schedule(
        lookback=lookback_given,
        retention=dt.timedelta(days=retention_days),
        first_since=parse_instant(since, option="--since") if since else None,
    )
    source, lago, state = _targets(ctx, common)
    now = dt.datetime.now(UTC)
    with (
        local_workers(common.workers, job.part) as workers,
        stopping() as stop,  # SIGINT, SIGTERM: exit 5
        progress(common.progress) as tell,
    ):
        summary = commands.run(
            source, lago, state, job, schedule, now=now, stop=stop, progress=tell,
            entered=workers.start, leaving=workers.stop,
        )  # fmt: skip
    if summary is not None:
        codes = workers.codes
        _finish(ctx, _whole_run(summary, state, codes), source, lago.shown, codes)
    if summary is None:
        click.echo(
            "nothing to reconcile yet: the window would end (now minus --settle) before it starts "
            "(where the last nightly run's coverage ended minus --lookback, or --since)",
            err=True,
        )


_PLACEHOLDER = Window(dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(2000, 1, 2, tzinfo=UTC))


def _job(
    ctx: click.Context, common: _Common, mode: str, span: Window, customers: frozenset[str]
) -> JobSettings:
    _, charge_by, code = settings(ctx, common.database_url, common.charge_by, common.event_code)
    margins_given, settle = margins(dataclasses.asdict(common))
    return JobSettings(
        mode=mode,
        window=span,
        charge_by=charge_by,
        code=code,
        customers=customers,
        margins=margins_given,
        settle=settle,
        dry_run=common.dry_run,
        max_events=common.max_events,
        chunk_rows=common.chunk_rows,
        slice=_slice(common.slice),
        restart=common.restart,
        join=common.join_run,
        part=_part(common.part, common.workers, _slice(common.slice)),
        lease=_lease(common.lease),
    )


def _part(text: str | None, workers: int, slice_: dt.timedelta) -> dt.timedelta | None:
    """--part: a whole multiple of --slice (None: one part, or a day with --workers)."""
    if text is None:
        return dt.timedelta(days=1) if workers > 1 else None
    given = parse_duration(text, option="--part")
    if given < slice_ or given % slice_:
        raise ConfigError(
            f"--part {text}: give a whole multiple of --slice ({slice_}), such as 6h or 1d: "
            "a part is a run of whole slices"
        )
    return given


def _lease(text: str) -> dt.timedelta:
    """--lease: at least 3 seconds (renewed every third of it)."""
    given = parse_duration(text, option="--lease")
    if given < dt.timedelta(seconds=3):
        raise ConfigError(f"--lease {text}: give at least 3s (it is renewed every third of it)")
    return given


def _slice(text: str) -> dt.timedelta:
    """--slice: a whole number of seconds that divides a day, at least a minute."""
    given = parse_duration(text, option="--slice")
    seconds = given.total_seconds()
    if seconds < 60 or seconds != int(seconds) or 86_400 % int(seconds):
        raise ConfigError(
            f"--slice {text}: give a whole number of seconds of at least a minute that divides "
            "a day, such as 15m, 1h or 6h (slices lie on a grid from midnight UTC)"
        )
    return given


def _targets(
    ctx: click.Context, common: _Common
) -> tuple[Database, commands.LagoSettings, commands.StateSettings]:
    source, _, _ = settings(ctx, common.database_url, common.charge_by, common.event_code)
    lago = lago_settings(ctx, common.lago_api_base, common.lago_api_key)
    state = state_settings(ctx, common.state_database_url, common.state_schema, source)
    return source, lago, state


def _whole_run(summary: RunSummary, state: commands.StateSettings, codes: list[int]) -> RunSummary:
    """With local workers: the run's whole summary, whichever of them recorded its end."""
    if not codes or summary.parts.finished_here or summary.run_id is None:
        return summary
    whole = commands.whole_run(state, summary.settings, summary.run_id)
    whole.parts = whole.parts._replace(done_here=summary.parts.done_here)
    return whole


def _finish(
    ctx: click.Context,
    summary: RunSummary,
    source: Database,
    lago: str,
    codes: list[int] | None = None,
) -> None:
    started_by_workers = summary.settings.join is not None  # --workers' own: its parent tells
    if not started_by_workers:
        click.echo(render.run_summary(summary, lago=lago), err=True)
    absent: tuple[str, ...] = ()
    if summary.parts.finished_here and not started_by_workers:  # else a worker's share
        report = run_report(summary, source=str(source), lago=lago)
        click.echo("\n" + summary_text(report), err=True)
        absent = report.absent_customers
    if summary.settings.dry_run and summary.plan is not None:
        for event in summary.plan.sample[:5]:  # a sample of what would be sent: data, on stdout
            click.echo(json.dumps(event, ensure_ascii=False))
    failed = [code for code in codes or [] if code]
    if failed:
        code = failed[0]
        how = f"exited with {code}" if code > 0 else f"was killed by signal {-code}"
        if summary.parts.finished_here:  # its part was done again by another: nothing is lost
            click.echo(f"a worker process {how}; the others did its part: the run is whole",
                       err=True)  # fmt: skip
        else:
            click.echo(f"a worker process {how}: see its log above; run again to go on",
                       err=True)  # fmt: skip
            ctx.exit(code if code > 0 else 1)
    if not summary.complete:
        ctx.exit(EXIT_UNSENT)
    if absent and len(absent) == len(summary.settings.customers):  # a typo, most likely
        raise ConfigError(absent_message(absent, summary.settings.charge_by))
