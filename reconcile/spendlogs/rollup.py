"""Read LiteLLM's daily rollup and the spend logs summed the same way: per customer, UTC day."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import psycopg
from psycopg import sql

from reconcile import queries
from reconcile.postgres import Database
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import open_snapshot

#: The daily rollup table LiteLLM keeps for each charge-by mode, and its id column.
ROLLUPS = {
    ChargeBy.END_USER_ID: ("LiteLLM_DailyEndUserSpend", "end_user_id"),
    ChargeBy.USER_ID: ("LiteLLM_DailyUserSpend", "user_id"),
    ChargeBy.TEAM_ID: ("LiteLLM_DailyTeamSpend", "team_id"),
}

#: (customer, UTC date as 'YYYY-MM-DD') -> (requests, spend in USD, exact decimal).
ByDay = dict[tuple[str, str], tuple[int, Decimal]]


@dataclasses.dataclass(frozen=True)
class DailySums:
    """Both sides of the cross-check over the same days, read in one snapshot."""

    table: str
    """The rollup table read, e.g. "LiteLLM_DailyEndUserSpend"."""
    rollup: ByDay | None
    """None when the proxy's database has no such table (LiteLLM before daily rollups), or
    when the role may not read it (`readable`)."""
    spend_logs: ByDay
    """Every status counted, as the rollup counts failures too; NaN and infinite costs left
    out of the sums. Empty when there is no rollup to compare with."""
    readable: bool = True
    """False when the table is there but the role has no SELECT on it."""


def read_daily_sums(
    database: Database, charge_by: ChargeBy, first: dt.date, last: dt.date
) -> DailySums:
    """Requests and spend per customer and UTC day, `first` to `last` included, both sides.

    Errors as `open_snapshot` raises them (SourceUnavailable, SourceError, ConfigError).
    """
    table, id_column = ROLLUPS[charge_by]
    named = queries.named("rollup.sql")
    names = {
        "rollup": sql.Identifier(table),
        "rollup_id": sql.Identifier(id_column),
        "charge_by": sql.Identifier(charge_by.column),
    }
    days = {
        "since": dt.datetime.combine(first, dt.time()),
        "until": dt.datetime.combine(last + dt.timedelta(days=1), dt.time()),
    }
    with open_snapshot(database) as connection:
        found = connection.execute(named["rollup_exists"], {"table": f'"{table}"'}).fetchone()
        exists, readable = found if found else (False, False)
        if not exists or not readable:
            return DailySums(table, None, {}, readable=not exists or readable)
        bounds = {"first": first.isoformat(), "last": last.isoformat()}
        rollup = _by_day(connection, named["rollup_by_day"], names, bounds)
        logs = _by_day(connection, named["spend_logs_by_day"], names, days)
    return DailySums(table, rollup, logs)


def _by_day(
    connection: psycopg.Connection,
    text: str,
    names: dict[str, sql.Identifier],
    params: Mapping[str, object],
) -> ByDay:
    query = sql.SQL(text).format(**names)
    return {
        (customer, day): (int(requests), Decimal(spend))
        for customer, day, requests, spend in connection.execute(query, params)
    }
