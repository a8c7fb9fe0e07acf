"""Where a backfill sends and records: Lago and the ledger, checked; the prompt before sending."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from reconcile import render
from reconcile.cli.options import (
    F,
    env_option,
    kept_duration_option,
    parse_duration,
    postgres,
    source_name,
)
from reconcile.commands import LagoSettings, StateSettings
from reconcile.errors import ConfigError, Interrupted
from reconcile.lago.answers import normalize_base_url
from reconcile.ledger import DEFAULT_SCHEMA
from reconcile.postgres import Database
from reconcile.results import Plan


def lago_options(function: F) -> F:
    """--lago-api-base and --lago-api-key (as LiteLLM's), and --lago-retry-budget."""
    base = env_option(
        "--lago-api-base",
        "LAGO_API_BASE",
        metavar="URL",
        help="Lago's API root, e.g. http://localhost:3000 or https://api.getlago.com. Required.",
    )
    key = env_option(
        "--lago-api-key",
        "LAGO_API_KEY",
        metavar="KEY",
        help="Lago's API key (prefer the environment variable: options show in `ps`). Required.",
    )
    budget = kept_duration_option(
        "--lago-retry-budget",
        "RECONCILE_LAGO_RETRY_BUDGET",
        default="5m",
        help="How long to keep trying while Lago fails (5xx, 429, refused, timed out) before "
        "exiting 1.",
    )
    return base(key(budget(function)))


def state_options(function: F) -> F:
    """--state-database-url and --state-schema: where reconcile keeps its ledger."""
    url = env_option(
        "--state-database-url",
        "RECONCILE_STATE_DATABASE_URL",
        metavar="URL",
        help="Postgres for reconcile's own ledger.  [default: DATABASE_URL]",
    )
    schema = env_option(
        "--state-schema",
        "RECONCILE_STATE_SCHEMA",
        default=DEFAULT_SCHEMA,
        show_default=True,
        metavar="NAME",
        help="Schema of reconcile's ledger tables.",
    )
    return url(schema(function))


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


def confirmer(*, yes: bool, above: int, lago: str) -> Callable[[Plan], bool] | None:
    """Show the plan and ask before sending more than `above` events, on a terminal only.

    Cron never blocks: without a terminal on stdin (or with --yes) there is nothing to ask,
    and None says so (the run then plans nothing ahead). No answer (end of input, Ctrl-C) is
    a no that raises Interrupted: exit 5, nothing sent.
    """
    if yes or not sys.stdin.isatty():
        return None

    def confirm(plan: Plan) -> bool:
        if plan.count <= above:
            return True
        click.echo("\n".join(["", *render.plan_lines(plan), ""]), err=True)
        try:
            return click.confirm(f"Send these {plan.count:,} events to Lago at {lago}?", err=True)
        except click.Abort:  # end of input (Ctrl-D) or Ctrl-C: taken as no
            click.echo(err=True)
            raise Interrupted("no answer at the prompt, taken as no") from None

    return confirm
