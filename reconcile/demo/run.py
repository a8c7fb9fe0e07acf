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
from reconcile.demo.embedded import embedded_postgres
from reconcile.demo.factory import SpendLog, SpendLogFactory, insert_spend_logs
from reconcile.demo.litellm_schema import create_database, ensure_template, migration_files
from reconcile.lago.client import LagoClient
from reconcile.lago.emulator import LagoEmulator
from reconcile.postgres import connect
from reconcile.report.build import ReportSettings
from reconcile.report.model import Report
from reconcile.settings import ChargeBy, JobSettings
from reconcile.summary import RunSummary
from reconcile.window import UTC, Window

log = logging.getLogger(__name__)

DEMO_EVENT_CODE = "openai_tokens"
DEMO_API_KEY = "demo-lago-key"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo generated, and what the two nightly runs made of it."""

    rows_generated: int
    callback_events: int
    lago_url: str
    runs: list[RunSummary]
    report: Report
    """`reconcile report` over the day, after both runs: what finance would read."""


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
            receptions = {event["transaction_id"]: received for event, received in live}
            lago.preload((event for event, _ in live), received=_reception(receptions))
            log.info(
                "Lago emulator at %s holds %s events from LiteLLM's live callback "
                "(%.0f%% of the billable requests; the rest were lost)",
                lago.url, f"{len(live):,}", delivered * 100,
            )  # fmt: skip
            settings = JobSettings(
                mode="run", window=Window(_midnight(day), _midnight(day) + dt.timedelta(days=1)),
                charge_by=charge_by, code=DEMO_EVENT_CODE,
            )  # fmt: skip
            schedule = commands.Schedule(first_since=_midnight(day))
            lago_settings = commands.LagoSettings(lago.url, DEMO_API_KEY)
            summaries = []
            for night in (dt.timedelta(hours=26, minutes=15), dt.timedelta(hours=26, minutes=45)):
                log.info("nightly run, as if it were %s", (_midnight(day) + night).isoformat())
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
            return DemoResult(len(logs), len(live), lago.url, summaries, report)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


def _callback_events(
    logs: list[SpendLog], charge_by: ChargeBy, delivered: float, rng: random.Random
) -> Iterator[tuple[dict[str, Any], dt.datetime]]:
    """What LiteLLM's live callback got into Lago: random ids, no timestamp, some lost."""
    column = {"end_user_id": "end_user", "user_id": "user", "team_id": "team_id"}[charge_by.value]
    for row in logs:
        subscription = getattr(row, column)
        if row.status != "success" or not subscription or rng.random() >= delivered:
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
        yield event, received


def _reception(by_id: dict[str, dt.datetime]) -> Callable[[Any], dt.datetime]:
    return lambda event: by_id[event["transaction_id"]]
