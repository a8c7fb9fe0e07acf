"""Benchmark the whole reconciliation of a busy day, beside the naive way and a raw COPY.

    python bench/reconcile_day.py                  # ~1,000,000 billable rows, 98% already in Lago
    python bench/reconcile_day.py --rows 200000

It writes one day of realistic spend logs (LiteLLM's real schema), starts the Lago emulator
in a process of its own holding, for 98% of the billable rows, the event LiteLLM's live
callback would have sent (random id, Lago's reception time), then runs `reconcile backfill`
over the day as a fresh process and, in the same run, `psql -c "COPY (<the reader's
SELECT>) TO STDOUT"` into /dev/null. It prints the time of each stage, the whole run beside
the raw COPY (target: at most 5 times), the Lago requests made beside the naive approach's
(list at per_page=100, one POST per missing event; target: at most 5%), and peak RSS
(target: under 1 GB). Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from events_throughput import timed  # same folder: the child's peak RSS, polled

from reconcile import commands
from reconcile.demo.embedded import any_postgres
from reconcile.demo.factory import SpendLog, SpendLogFactory, insert_spend_logs
from reconcile.demo.litellm_schema import (
    create_database,
    drop_database,
    ensure_template,
    psql_command,
)
from reconcile.postgres import Database, connect
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import open_snapshot, spend_log_columns, window_query
from reconcile.window import UTC, Window

DAY = dt.date(2026, 11, 1)
CODE = "openai_tokens"
KEY = "bench-key"
EMULATOR = """
import gc, json, sys
from reconcile.lago.emulator import LagoEmulator
from reconcile.lago.events import parse_time
events, receptions = [], {}
with open(sys.argv[1]) as lines:
    for line in lines:
        item = json.loads(line)
        receptions[item["event"]["transaction_id"]] = parse_time(item["received"])
        events.append(item["event"])
with LagoEmulator(api_key=sys.argv[2]) as lago:
    lago.preload(events, received=lambda event: receptions[event["transaction_id"]])
    del events, receptions
    lago.warm()  # encode once, as a Lago serving from its database would not pay per listing
    gc.freeze()  # the cached pages need no garbage collection
    print(lago.url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(database: Database, rows: int, callback_file: Path) -> int:
    """Write the day's rows; for 98% of the billable ones, the live callback's event."""
    rng = random.Random(rows)  # noqa: S311 - reproducible data, not secrets

    def rows_and_events(out: object) -> Iterator[SpendLog]:
        for row in SpendLogFactory(seed=rows).day(DAY, rows):
            if row.status == "success" and row.end_user and rng.random() < 0.98:
                event = {
                    "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "external_subscription_id": row.end_user,
                    "code": CODE,
                    "properties": {
                        "model": row.model,
                        "response_cost": row.spend,
                        "prompt_tokens": row.prompt_tokens,
                        "completion_tokens": row.completion_tokens,
                        "total_tokens": row.total_tokens,
                    },
                }
                received = row.end.replace(tzinfo=UTC) + dt.timedelta(
                    milliseconds=rng.randint(40, 3000)
                )
                out.write(json.dumps({"event": event, "received": received.isoformat()}) + "\n")  # type: ignore[attr-defined]
            yield row

    started = time.monotonic()
    with callback_file.open("w") as out, connect(database) as connection:
        written = insert_spend_logs(connection, rows_and_events(out))
        connection.commit()
    with connect(database, autocommit=True) as connection:
        connection.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
    log(f"  wrote {written:,} rows in {time.monotonic() - started:.0f} s")
    return written


def copy_seconds(database: Database) -> float:
    window = Window(
        dt.datetime.combine(DAY, dt.time(), tzinfo=UTC),
        dt.datetime.combine(DAY, dt.time(), tzinfo=UTC) + dt.timedelta(days=1),
    )
    with open_snapshot(database) as connection:
        query = window_query(
            connection, spend_log_columns(connection, database), ChargeBy.END_USER_ID, window
        )
    psql, environment = psql_command(database)
    seconds, _ = timed([*psql, "-c", f"COPY ({query}) TO STDOUT"], environment)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_050_000, help="spend-log rows (about 95%% billable)"
    )
    arguments = parser.parse_args()
    with any_postgres() as admin, tempfile.TemporaryDirectory() as folder:
        name = f"reconcile_bench_{uuid.uuid4().hex[:8]}"
        database = create_database(admin, name, template=ensure_template(admin))
        try:
            callback_file = Path(folder) / "callback.jsonl"
            fill(database, arguments.rows, callback_file)
            commands.migrate(commands.StateSettings(database))
            started = time.monotonic()
            emulator = subprocess.Popen(
                [sys.executable, "-c", EMULATOR, str(callback_file), KEY],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            url = emulator.stdout.readline().strip() if emulator.stdout else ""
            log(f"  emulator at {url} preloaded in {time.monotonic() - started:.0f} s")
            try:
                environment = {
                    **os.environ,
                    "DATABASE_URL": database.url(),
                    "LAGO_API_BASE": url,
                    "LAGO_API_KEY": KEY,
                    "LAGO_API_EVENT_CODE": CODE,
                }
                command = [
                    sys.executable,
                    "-m",
                    "reconcile",
                    "backfill",
                    "--since",
                    str(DAY),
                    "--until",
                    str(DAY + dt.timedelta(days=1)),
                    "--yes",
                ]
                whole, peak = timed(command, environment)
            finally:
                if emulator.stdin:
                    emulator.stdin.close()
                emulator.wait()
            raw = copy_seconds(database)
            with connect(database) as connection:
                counts = connection.execute(
                    "SELECT counts FROM litellm_reconcile.runs ORDER BY id DESC LIMIT 1"
                ).fetchone()
        finally:
            drop_database(admin, name)
    report(counts[0] if counts else {}, whole, peak, raw)


STAGES = ("read spend logs", "list Lago events", "match", "ledger", "backfill")


def report(counts: dict, whole: float, peak_kib: int, raw: float) -> None:  # type: ignore[type-arg]
    billable = counts["rows"]["billable"]["rows"]
    naive = math.ceil(counts["listed"] / 100) + counts["missing"]
    print(
        f"billable rows {billable:,}; Lago events listed {counts['listed']:,}; "
        f"missing {counts['missing']:,}; sent {counts['sent']:,}"
    )
    print("| stage | seconds |")
    print("|---|---:|")
    for stage in STAGES:  # pipeline order (the ledger's JSON keeps its own)
        print(f"| {stage} | {counts['seconds'].get(stage, 0.0):.1f} |")
    print(f"| whole run (a fresh process, start-up included) | {whole:.1f} |")
    print(f"| raw COPY of the same window (psql) | {raw:.1f} |")
    print(f"whole run / raw COPY: {whole / raw:.1f}x (target <= 5x)")
    print(
        f"Lago requests: {counts['lago_requests']:,}, naive: {naive:,} "
        f"({counts['lago_requests'] / naive:.1%} of naive; target <= 5%)"
    )
    print(f"peak RSS: {peak_kib / 1024:.0f} MB (target < 1 GB)")


if __name__ == "__main__":
    main()
