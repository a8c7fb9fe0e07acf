"""Reports against ground truth computed in SQL over LiteLLM's real schema, and planted gaps."""

import dataclasses
import datetime as dt
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from conftest import DAY
from test_reconcile_e2e import CODE, KEY, billable, callback

from reconcile import commands
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.money import exact, wide
from reconcile.postgres import Database, connect
from reconcile.report.aggregate import Tallies, _held
from reconcile.report.build import ReportSettings, build_report, local_days, time_zone
from reconcile.report.lines import finish
from reconcile.results import Line, Report, RollupState, Status
from reconcile.settings import ChargeBy, JobSettings
from reconcile.testing.factory import SpendLog, SpendLogFactory
from reconcile.window import UTC, Window

DAY_WINDOW = Window(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))


@dataclasses.dataclass
class Scene:
    database: Database
    lago: LagoEmulator
    rows: list[SpendLog]
    delivered: list[SpendLog]  # rows whose live callback event reached Lago


@pytest.fixture
def scene(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> Iterator[Scene]:
    """Two days (Oct 31 and Nov 1) of spend logs; Lago got the callback for 90% of them."""
    rows = list(factory.day(DAY - dt.timedelta(days=1), 150)) + list(factory.day(DAY, 400))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    rng = random.Random(7)
    delivered = [row for row in billable(rows) if rng.random() < 0.9]
    with LagoEmulator(api_key=KEY) as lago:
        callback(lago, delivered)
        yield Scene(litellm_db, lago, rows, delivered)


def report(scene: Scene, **changes: Any) -> Report:
    settings = dataclasses.replace(
        ReportSettings(window=DAY_WINDOW, charge_by=ChargeBy.END_USER_ID, code=CODE), **changes
    )
    with LagoClient(scene.lago.url, KEY) as client:
        return build_report(scene.database, client, settings)


def truth(
    database: Database, sql: str, **params: Any
) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(customer, period) -> (count, exact spend) computed by Postgres alone."""
    with connect(database) as connection:
        return {
            (customer, period): (int(count), Decimal(spend))
            for customer, period, count, spend in connection.execute(sql, params)  # type: ignore[arg-type]
        }


BILLABLE_BY_DAY = """
SELECT end_user, to_char("startTime" AT TIME ZONE 'UTC' AT TIME ZONE %(zone)s, %(pattern)s),
       count(*), sum(spend::text::numeric)
FROM "LiteLLM_SpendLogs"
WHERE "startTime" >= %(since)s AND "startTime" < %(until)s
  AND (status IS NULL OR status = 'success') AND end_user <> ''
GROUP BY 1, 2
"""


def by_key(lines: list[Line] | Any) -> dict[tuple[str, str], Line]:
    return {(line.customer, line.period): line for line in lines}


def test_litellm_side_equals_sql_ground_truth(scene: Scene) -> None:
    result = report(scene)
    expected = truth(
        scene.database, BILLABLE_BY_DAY, zone="UTC", pattern="YYYY-MM-DD",
        since=dt.datetime(2026, 11, 1), until=dt.datetime(2026, 11, 2),
    )  # fmt: skip
    lines = by_key(line for line in result.lines if line.billable_requests)
    assert {key: (line.billable_requests, line.spend) for key, line in lines.items()} == expected
    assert result.totals.spend == sum(spend for _, spend in expected.values())
    assert result.totals.billable_requests == sum(count for count, _ in expected.values())


def test_missing_and_matched_add_up_to_what_lago_was_sent(scene: Scene) -> None:
    result = report(scene)
    in_day = [row for row in billable(scene.rows) if row.start.date() == DAY]
    delivered = {id(row) for row in scene.delivered}
    assert result.totals.missing_events == sum(id(row) not in delivered for row in in_day)
    assert result.totals.matched_events == sum(id(row) in delivered for row in in_day)
    assert result.totals.missing_spend == sum(
        (Decimal(repr(row.spend)) for row in in_day if id(row) not in delivered), Decimal(0)
    )
    under = [line for line in result.lines if line.missing_events]
    assert under and all(line.status is Status.UNDER_BILLED for line in under)
    assert result.lines[: len(under)] == sorted(
        result.lines[: len(under)], key=lambda line: -(abs(line.delta) + line.missing_spend)
    )


def test_after_a_backfill_the_ledger_shows_it_and_nothing_is_missing(scene: Scene) -> None:
    settings = JobSettings(
        mode="backfill", window=DAY_WINDOW, charge_by=ChargeBy.END_USER_ID, code=CODE
    )
    with LagoClient(scene.lago.url, KEY) as client:
        summary = commands.backfill(
            scene.database, commands.LagoSettings(scene.lago.url, KEY),
            commands.StateSettings(scene.database), settings, client=client,
        )  # fmt: skip
    result = report(scene)
    assert result.totals.missing_events == 0
    assert result.totals.backfilled_events == summary.sent > 0
    assert result.totals.backfill_runs == (summary.run_id,)
    assert result.totals.delta == 0
    assert not result.exceptions


def test_unexplained_events_are_over_billing_by_reason(scene: Scene) -> None:
    with httpx.Client(base_url=scene.lago.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        event = {"transaction_id": "stray-1", "code": CODE, "external_subscription_id": "cust_ghost",
                 "timestamp": dt.datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp(),
                 "properties": {"model": "gpt-4o", "response_cost": 2.5}}  # fmt: skip
        http.post("/api/v1/events", json={"event": event}).raise_for_status()
    result = report(scene)
    ghost = by_key(result.lines)[("cust_ghost", "2026-11-01")]
    assert (ghost.unexplained_events, ghost.no_such_request_events) == (1, 1)
    assert ghost.no_such_request_cost == ghost.lago_cost == Decimal("2.5")
    assert ghost.delta == Decimal("-2.5") and ghost.status is Status.OVER_BILLED
    assert ghost in result.exceptions


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_days_follow_the_time_zone(scene: Scene, zone: str) -> None:
    since = dt.datetime(2026, 11, 1, tzinfo=time_zone(zone))
    window = Window(since.astimezone(UTC), (since + dt.timedelta(days=1)).astimezone(UTC))
    result = report(scene, window=window, timezone=zone)
    expected = truth(
        scene.database, BILLABLE_BY_DAY, zone=zone, pattern="YYYY-MM-DD",
        since=window.since.replace(tzinfo=None), until=window.until.replace(tzinfo=None),
    )  # fmt: skip
    lines = by_key(line for line in result.lines if line.billable_requests)
    assert {key: (line.billable_requests, line.spend) for key, line in lines.items()} == expected
    assert [entry.day for entry in result.daily] == [dt.date(2026, 11, 1)]
    assert result.header.since.utcoffset() == since.utcoffset()


def test_months_split_at_the_month_edge(scene: Scene) -> None:
    window = Window(dt.datetime(2026, 10, 31, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC))
    result = report(scene, window=window, by="month")
    periods = {line.period for line in result.lines}
    assert periods == {"2026-10", "2026-11"}
    expected = truth(
        scene.database, BILLABLE_BY_DAY, zone="UTC", pattern="YYYY-MM",
        since=dt.datetime(2026, 10, 31), until=dt.datetime(2026, 11, 2),
    )  # fmt: skip
    lines = by_key(line for line in result.lines if line.billable_requests)
    assert {key: (line.billable_requests, line.spend) for key, line in lines.items()} == expected
    assert [entry.day for entry in result.daily] == [dt.date(2026, 10, 31), dt.date(2026, 11, 1)]
    assert sum(entry.litellm_spend for entry in result.daily) == result.totals.spend


def test_not_billable_rows_are_counted_apart(scene: Scene) -> None:
    result = report(scene)
    in_day = [row for row in scene.rows if row.start.date() == DAY]
    nobody = [row for row in in_day if not row.end_user and row.status in ("success", None)]
    failed = [row for row in in_day if row.status not in ("success", None) and row.spend]
    assert result.totals.unattributable_requests == len(nobody) > 0
    assert result.totals.failed_requests_with_spend == len(failed)
    assert result.totals.requests == len(in_day)


def test_the_rollup_cross_check_finds_planted_gaps(scene: Scene) -> None:
    customers = truth(
        scene.database, BILLABLE_BY_DAY, zone="UTC", pattern="YYYY-MM-DD",
        since=dt.datetime(2026, 11, 1), until=dt.datetime(2026, 11, 2),
    )  # fmt: skip
    (lost, _), (whole, _) = sorted(customers)[:2]
    with connect(scene.database) as connection:
        for customer, extra in ((lost, Decimal("5.25")), (whole, Decimal(0))):
            connection.execute(
                """INSERT INTO "LiteLLM_DailyEndUserSpend"
                       (id, end_user_id, date, api_key, model, spend, api_requests, updated_at)
                   SELECT gen_random_uuid()::text, end_user, '2026-11-01', 'key', 'gpt-4o',
                          sum(spend) + %(extra)s, count(*), now()
                   FROM "LiteLLM_SpendLogs"
                   WHERE end_user = %(customer)s AND "startTime" >= '2026-11-01'
                     AND "startTime" < '2026-11-02'
                   GROUP BY end_user""",
                {"customer": customer, "extra": float(extra)},
            )
        connection.commit()
    result = report(scene)
    gaps = result.rollup_gaps
    assert [(gap.customer, gap.day) for gap in gaps] == [(lost, dt.date(2026, 11, 1))]
    assert abs(gaps[0].lost_spend - Decimal("5.25")) < Decimal("1e-9")
    assert (result.rollup_state, result.rollup_days) == (RollupState.COMPARED, 2)
    assert result.failed_check


@pytest.mark.parametrize("cost", ["NaN", "Infinity"])
def test_a_nan_or_infinite_cost_in_the_rollup_is_compared_by_requests(
    scene: Scene, cost: str
) -> None:
    customers = truth(
        scene.database, BILLABLE_BY_DAY, zone="UTC", pattern="YYYY-MM-DD",
        since=dt.datetime(2026, 11, 1), until=dt.datetime(2026, 11, 2),
    )  # fmt: skip
    (customer, _), *_ = sorted(customers)
    with connect(scene.database) as connection:
        # LiteLLM adds each request's cost to its rollup: one such cost poisons both.
        connection.execute(
            """UPDATE "LiteLLM_SpendLogs" SET spend = %(cost)s::float8
               WHERE request_id = (SELECT min(request_id) FROM "LiteLLM_SpendLogs"
                                   WHERE end_user = %(customer)s
                                     AND "startTime" >= '2026-11-01' AND "startTime" < '2026-11-02')""",
            {"cost": cost, "customer": customer},
        )
        connection.execute(
            """INSERT INTO "LiteLLM_DailyEndUserSpend"
                   (id, end_user_id, date, api_key, model, spend, api_requests, updated_at)
               SELECT gen_random_uuid()::text, end_user, '2026-11-01', 'key', 'gpt-4o',
                      sum(spend), count(*), now()
               FROM "LiteLLM_SpendLogs"
               WHERE end_user = %(customer)s AND "startTime" >= '2026-11-01'
                 AND "startTime" < '2026-11-02'
               GROUP BY end_user""",
            {"customer": customer},
        )
        connection.commit()
    result = report(scene)
    assert (result.rollup_state, result.rollup_days, result.rollup_gaps) == (
        RollupState.COMPARED, 1, [],
    )  # fmt: skip
    assert any("NaN or infinite spend for 1 customer-day" in note for note in result.notes)


def test_the_rollup_cross_check_says_why_it_compared_nothing(scene: Scene) -> None:
    assert report(scene).rollup_state is RollupState.NO_ROWS  # an empty rollup table
    half_day = Window(DAY_WINDOW.since, DAY_WINDOW.since + dt.timedelta(hours=12))
    assert report(scene, window=half_day).rollup_state is RollupState.NO_WHOLE_DAY


def test_local_days_cut_at_local_midnight() -> None:
    zone = time_zone("Europe/Paris")
    window = Window(
        dt.datetime(2026, 10, 24, 12, tzinfo=UTC), dt.datetime(2026, 10, 27, tzinfo=UTC)
    )
    parts = list(local_days(window, zone))
    assert [day for day, _ in parts] == [
        dt.date(2026, 10, 24),
        dt.date(2026, 10, 25),
        dt.date(2026, 10, 26),
        dt.date(2026, 10, 27),
    ]
    # The night of Oct 25 leaves summer time: that local day lasts 25 hours.
    assert parts[1][1].until - parts[1][1].since == dt.timedelta(hours=25)
    assert parts[0][1].since == window.since and parts[-1][1].until == window.until


def test_missing_usage_in_a_finalized_invoice_is_not_recoverable(scene: Scene) -> None:
    first = report(scene)
    (closed, draft) = sorted({line.customer for line in first.lines if line.missing_events})[:2]
    november = (
        dt.datetime(2026, 11, 1, tzinfo=UTC),
        dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
    )
    for customer, status in ((closed, "finalized"), (draft, "draft")):
        scene.lago.add_subscription(customer, f"acct-{customer}")
        scene.lago.add_invoice(customer, *november, status=status)
    with LagoClient(scene.lago.url, KEY) as client:
        result = commands.report(
            scene.database, commands.LagoSettings(scene.lago.url, KEY),
            commands.StateSettings(scene.database),
            ReportSettings(window=DAY_WINDOW, charge_by=ChargeBy.END_USER_ID, code=CODE),
            client=client,
        )  # fmt: skip
    lines = by_key(result.lines)
    closed_line, draft_line = lines[(closed, "2026-11-01")], lines[(draft, "2026-11-01")]
    assert closed_line.not_recoverable_events == closed_line.missing_events > 0
    assert closed_line.not_recoverable_spend == closed_line.missing_spend
    assert draft_line.not_recoverable_events == 0 < draft_line.missing_events
    assert any("no subscription" in note for note in result.notes)


@pytest.mark.parametrize("event_cost", [0.00012300000000000001, 1.5e-30])
def test_matched_cost_is_what_the_event_holds(event_cost: float) -> None:
    texts = pa.array(["0.000123", "0.5", "0.25"])
    held = _held(
        exact(texts) or texts,
        np.array([0.000123, 0.5, 0.25]),
        partner=np.array([0, -1, 1]),
        event_costs=np.array([event_cost, float("nan")]),
    )
    tallies = Tallies()
    tallies.grouped(pa.array(["a"] * 3), pa.array(["p"] * 3), count="n", total="t", texts=held)
    # row 0 holds the event's own double; row 1 has no event and row 2 an event without cost:
    # both fall back to the row's cost.
    with wide():  # exact: 1.5e-30 + 0.75 has 31 digits, more than the default context keeps
        assert tallies.values[("a", "p")]["t"] == Decimal(repr(event_cost)) + Decimal("0.75")


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({"spend": Decimal("1"), "matched_cost": Decimal("1")}, Status.OK),
        ({"spend": Decimal("1"), "matched_cost": Decimal("0.995")}, Status.OK),  # rounding
        ({"spend": Decimal("1"), "matched_cost": Decimal("0.98")}, Status.UNDER_BILLED),
        ({"spend": Decimal("0.0042"), "missing_events": 1, "missing_spend": Decimal("0.0042")},
         Status.UNDER_BILLED),
        ({"spend": Decimal("0.0042"), "matched_cost": Decimal("0.0042"),
          "unexplained_events": 1, "unexplained_cost": Decimal("0.0042")}, Status.OVER_BILLED),
        ({"unexplained_events": 1, "unexplained_cost": Decimal("0")}, Status.OVER_BILLED),
    ],
)  # fmt: skip
def test_any_missing_or_unexplained_event_is_an_exception_whatever_its_amount(
    values: dict[str, Any], status: Status
) -> None:
    """The tolerance absorbs the rounding of amounts, never a duplicate worth $0.0042."""
    assert finish(("cust", "2026-11-28"), values, (), Decimal("0.01")).status is status


@pytest.fixture
def reader_role(scene: Scene) -> Iterator[Database]:
    """The role of sql/readonly_role.sql on the scene's database: it may not read the ledger."""
    role = f"reader_{random.randrange(10**8)}"
    script = (Path(__file__).resolve().parents[1] / "sql" / "readonly_role.sql").read_text()
    with connect(scene.database, autocommit=True) as connection:
        connection.execute(script.replace("reconcile_reader", role).replace("<password>", "pw"))  # type: ignore[call-overload]
    try:
        yield scene.database.replace(user=role)
    finally:
        with connect(scene.database, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')  # type: ignore[call-overload]


def test_a_ledger_the_role_may_not_read_is_a_note_naming_the_grant(
    scene: Scene, reader_role: Database
) -> None:
    with LagoClient(scene.lago.url, KEY) as client:
        result = build_report(
            reader_role, client, ReportSettings(DAY_WINDOW, ChargeBy.END_USER_ID, CODE)
        )
    assert result.totals.billable_requests > 0  # the spend logs were read all the same
    assert result.totals.backfilled_events == 0
    [note] = [note for note in result.notes if "ledger" in note and "rollup" not in note]
    assert "could not be read" in note
    assert "grant this role USAGE ON SCHEMA litellm_reconcile and SELECT on its tables" in note
    assert result.rollup_state is RollupState.NOT_READABLE
    [rollup_note] = [note for note in result.notes if "rollup" in note]
    assert 'grant it SELECT on "LiteLLM_DailyEndUserSpend"' in rollup_note


def test_a_state_database_without_a_ledger_is_a_note(
    scene: Scene, new_database: Callable[[], Database]
) -> None:
    empty = new_database()
    with LagoClient(scene.lago.url, KEY) as client:
        result = build_report(
            scene.database, client, ReportSettings(DAY_WINDOW, ChargeBy.END_USER_ID, CODE),
            state=empty, state_schema="elsewhere",
        )  # fmt: skip
    [note] = [note for note in result.notes if "ledger" in note]
    assert note.startswith(f"no ledger in schema elsewhere of {empty}")
    assert "reconcile migrate" in note
    assert result.totals.missing_events > 0 and result.totals.backfilled_events == 0
