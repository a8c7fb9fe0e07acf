"""`reconcile demo`: the whole loop on an embedded Postgres and the Lago emulator, nothing else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from reconcile import commands
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import connect
from reconcile.report.build import ReportSettings
from reconcile.results import Report, RunSummary
from reconcile.settings import ChargeBy, JobSettings
from reconcile.testing.embedded import embedded_postgres
from reconcile.testing.factory import SpendLog, SpendLogFactory, insert_spend_logs
from reconcile.testing.litellm_schema import create_database, ensure_template, migration_files
from reconcile.window import UTC, Window

log = logging.getLogger(__name__)

DEMO_EVENT_CODE = "openai_tokens"
DEMO_API_KEY = "demo-lago-key"


@dataclasses.dataclass(frozen=True)
class Proof:
    """The demo's claim, checked against what it planted: the lost requests, and only they, billed.

    Request sets are compared by LiteLLM's request id (`litellm_request_id` in our events).
    """

    billable: int
    lost: int
    """Billable requests whose live callback event never reached Lago (planted)."""
    found_missing: int
    """What the first nightly run found missing from Lago."""
    backfilled: int
    """Events reconcile sent, as Lago now holds them."""
    same_requests: bool
    """The backfilled requests are exactly the lost ones."""
    billed_once: bool
    """Lago holds one event per billable request: the callback's or reconcile's, never both."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo generated, what the two nightly runs made of it, and the check of both."""

    rows_generated: int
    callback_events: int
    lago_url: str
    runs: list[RunSummary]
    report: Report
    """`reconcile report` over the day, after both runs: what finance would read."""
    proof: Proof


def run_demo(
    *, day: dt.date, rows: int, seed: int, charge_by: ChargeBy, delivered: float = 0.95
) -> DemoResult:
    """Spend logs in an embedded Postgres, most of them billed live, then two nightly runs."""
    log.info("starting an embedded PostgreSQL server (pgserver)")
    with embedded_postgres() as admin:
        log.info(
            "building LiteLLM's schema from %s migrations (litellm-proxy-extras)",
            len(migration_files()),
        )
        database = create_database(admin, "litellm", template=ensure_template(admin))
        logs = list(SpendLogFactory(seed).day(day, rows))
        with connect(database) as connection:
            insert_spend_logs(connection, logs)
            connection.commit()
        log.info("wrote %s spend-log rows for %s, as a LiteLLM proxy would", f"{len(logs):,}", day)
        state = commands.StateSettings(database)
        commands.migrate(state)
        with (
            LagoEmulator(api_key=DEMO_API_KEY) as lago,
            LagoClient(lago.url, DEMO_API_KEY) as client,
        ):
            live = list(_callback_events(logs, charge_by, delivered, random.Random(seed)))
            receptions = {event["transaction_id"]: received for event, received, _ in live}
            lago.preload((event for event, _, _ in live), received=_reception(receptions))
            log.info("Lago emulator at %s", lago.url)
            log.info(
                "it holds %s events from LiteLLM's live callback: %.0f%% of the billable "
                "requests, the rest lost", f"{len(live):,}", delivered * 100,
            )  # fmt: skip
            settings = JobSettings(
                mode="run", window=Window(_midnight(day), _midnight(day) + dt.timedelta(days=1)),
                charge_by=charge_by, code=DEMO_EVENT_CODE,
            )  # fmt: skip
            schedule = commands.Schedule(first_since=_midnight(day))
            lago_settings = commands.LagoSettings(lago.url, DEMO_API_KEY)
            summaries = []
            nights = (dt.timedelta(hours=26, minutes=15), dt.timedelta(hours=26, minutes=45))
            for number, night in enumerate(nights, start=1):
                when = (_midnight(day) + night).strftime("%Y-%m-%d %H:%M UTC")
                log.info("nightly run %s, as if it were %s", number, when)
                summary = commands.run(
                    database,
                    lago_settings,
                    state,
                    settings,
                    schedule,
                    now=_midnight(day) + night,
                    client=client,
                )
                if summary is not None:
                    summaries.append(summary)
            report = commands.report(
                database,
                lago_settings,
                state,
                ReportSettings(window=settings.window, charge_by=charge_by, code=DEMO_EVENT_CODE),
                client=client,
            )
            proof = _prove(logs, live, summaries, lago.stored_events(), charge_by)
            return DemoResult(len(logs), len(live), lago.url, summaries, report, proof)


def _prove(
    logs: list[SpendLog],
    live: list[tuple[dict[str, Any], dt.datetime, str]],
    runs: list[RunSummary],
    stored: list[dict[str, Any]],
    charge_by: ChargeBy,
) -> Proof:
    """Check the claim from what was planted and what Lago holds, not from the runs' own word."""
    billable = {row.request_id for row in logs if _billable(row, charge_by)}
    planted = {event["transaction_id"]: request_id for event, _, request_id in live}
    lost = billable - set(planted.values())
    held = [planted.get(event["transaction_id"]) for event in stored]
    backfilled = [
        str(event["properties"].get("litellm_request_id"))
        for event in stored
        if event["transaction_id"] not in planted
    ]
    return Proof(
        billable=len(billable),
        lost=len(lost),
        found_missing=runs[0].missing if runs else 0,
        backfilled=len(backfilled),
        same_requests=sorted(backfilled) == sorted(lost),
        billed_once=sorted([*(one for one in held if one is not None), *backfilled])
        == sorted(billable),
    )


def _billable(row: SpendLog, charge_by: ChargeBy) -> bool:
    return row.status in ("success", None) and bool(_customer(row, charge_by)) and row.spend >= 0


def _customer(row: SpendLog, charge_by: ChargeBy) -> str | None:
    return getattr(row, charge_by.column)  # type: ignore[no-any-return]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


def _callback_events(
    logs: list[SpendLog], charge_by: ChargeBy, delivered: float, rng: random.Random
) -> Iterator[tuple[dict[str, Any], dt.datetime, str]]:
    """What LiteLLM's live callback got into Lago: random ids, no timestamp, some lost.

    Each event comes with its reception time and the request id of the row it bills.
    """
    for row in logs:
        subscription = _customer(row, charge_by)
        if not _billable(row, charge_by) or rng.random() >= delivered:
            continue
        event = {
            "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "external_subscription_id": subscription,
            "code": DEMO_EVENT_CODE,
            "properties": {
                "model": row.model, "response_cost": row.spend, "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens, "total_tokens": row.total_tokens,
            },
        }  # fmt: skip
        received = row.end.replace(tzinfo=UTC) + dt.timedelta(milliseconds=rng.randint(40, 2500))
        yield event, received, row.request_id


def _reception(by_id: dict[str, dt.datetime]) -> Callable[[Any], dt.datetime]:
    return lambda event: by_id[event["transaction_id"]]
