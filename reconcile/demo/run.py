"""`reconcile demo`: the main job end to end on an embedded Postgres with LiteLLM's real schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import BinaryIO

from reconcile import commands
from reconcile.demo.embedded import embedded_postgres
from reconcile.demo.factory import SpendLogFactory, insert_spend_logs
from reconcile.demo.litellm_schema import create_database, ensure_template, migration_files
from reconcile.postgres import connect
from reconcile.settings import ChargeBy
from reconcile.window import UTC, Window

log = logging.getLogger(__name__)

DEMO_EVENT_CODE = "openai_tokens"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo generated and what the pipeline made of it."""

    rows_generated: int
    events: commands.EventsSummary


def run_demo(
    *, day: dt.date, rows: int, seed: int, charge_by: ChargeBy, sink: BinaryIO
) -> DemoResult:
    """Start Postgres, build LiteLLM's schema, write a day of spend logs, and run the pipeline."""
    log.info("starting an embedded PostgreSQL server (pgserver)")
    with embedded_postgres() as admin:
        log.info(
            "building LiteLLM's schema from %s migrations (litellm-proxy-extras)",
            len(migration_files()),
        )
        database = create_database(admin, "litellm", template=ensure_template(admin))
        with connect(database) as connection:
            written = insert_spend_logs(connection, SpendLogFactory(seed).day(day, rows))
            connection.commit()
        log.info("wrote %s spend-log rows for %s, as a LiteLLM proxy would", f"{written:,}", day)
        since = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
        summary = commands.events(
            database,
            window=Window(since, since + dt.timedelta(days=1)),
            charge_by=charge_by,
            code=DEMO_EVENT_CODE,
            sink=sink,
        )
    return DemoResult(rows_generated=written, events=summary)
