"""LiteLLM's daily rollup against its spend logs: spend the rollup holds and the rows lost."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import psycopg
from psycopg import sql

from reconcile import queries
from reconcile.ledger import DEFAULT_SCHEMA
from reconcile.money import ZERO
from reconcile.postgres import Database
from reconcile.results import RollupGap, RollupState
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import open_snapshot
from reconcile.window import UTC, Window

ROLLUPS = {
    ChargeBy.END_USER_ID: ("LiteLLM_DailyEndUserSpend", "end_user_id"),
    ChargeBy.USER_ID: ("LiteLLM_DailyUserSpend", "user_id"),
    ChargeBy.TEAM_ID: ("LiteLLM_DailyTeamSpend", "team_id"),
}


def rollup_gaps(
    database: Database,
    window: Window,
    charge_by: ChargeBy,
    customers: frozenset[str],
    tolerance: Decimal,
    notes: list[str],
) -> tuple[RollupState, int, list[RollupGap]]:
    """UTC days (wholly in the window) where the daily rollup holds more than the spend logs.

    Returns what could be compared, how many customer-days of the rollup were, and the gaps.
    """
    first = window.since.astimezone(UTC).date()
    if window.since.astimezone(UTC) > dt.datetime.combine(first, dt.time(), UTC):
        first += dt.timedelta(days=1)
    last = window.until.astimezone(UTC).date() - dt.timedelta(days=1)
    if last < first:
        return RollupState.NO_WHOLE_DAY, 0, []
    table, id_column = ROLLUPS[charge_by]
    named = queries.named("report.sql", schema=DEFAULT_SCHEMA)
    names = {
        "rollup": sql.Identifier(table),
        "rollup_id": sql.Identifier(id_column),
        "charge_by": sql.Identifier(charge_by.column),
    }
    bounds = {"first": first.isoformat(), "last": last.isoformat()}
    days = {
        "since": dt.datetime.combine(first, dt.time()),
        "until": dt.datetime.combine(last + dt.timedelta(days=1), dt.time()),
    }
    with open_snapshot(database) as connection:
        exists = connection.execute(named["rollup_exists"], {"table": f'"{table}"'}).fetchone()
        if not exists or not exists[0]:
            notes.append(f'no "{table}" table: the rollup cross-check was skipped')
            return RollupState.NO_TABLE, 0, []
        rollup = _by_day(connection, named["rollup_by_day"], names, bounds)
        logs = _by_day(connection, named["spend_logs_by_day"], names, days)
    if customers:
        rollup = {key: value for key, value in rollup.items() if key[0] in customers}
    gaps, unsummable = [], 0
    for key, (requests, spend) in sorted(rollup.items()):
        log_requests, log_spend = logs.get(key, (0, ZERO))
        summable = spend.is_finite()  # a NaN or infinite cost poisons the rollup's sum for good
        unsummable += not summable
        lost = spend - log_spend > tolerance if summable else False  # then requests only
        if lost or requests > log_requests:
            day = dt.date.fromisoformat(key[1])
            gaps.append(RollupGap(key[0], day, requests, spend, log_requests, log_spend))
    if unsummable:
        notes.append(
            f"LiteLLM's daily rollup holds a NaN or infinite spend for {unsummable:,} "
            "customer-day(s) (a request with such a cost was added to it): their requests "
            "were compared, not their spend"
        )
    return (RollupState.COMPARED if rollup else RollupState.NO_ROWS), len(rollup), gaps


def _by_day(
    connection: psycopg.Connection,
    text: str,
    names: dict[str, sql.Identifier],
    params: Mapping[str, object],
) -> dict[tuple[str, str], tuple[int, Decimal]]:
    query = sql.SQL(text).format(**names)
    return {
        (customer, day): (int(requests), Decimal(spend))
        for customer, day, requests, spend in connection.execute(query, params)
    }
