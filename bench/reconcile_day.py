"""Benchmark the whole reconciliation of a busy day, beside the naive way and a raw COPY.

    python bench/reconcile_day.py                  # ~1,000,000 billable rows in the day
    python bench/reconcile_day.py --rows 200000

It writes a day of realistic spend logs (LiteLLM's real schema) and a quarter as many on the
day before and the day after (the neighbours the margins read), 0.1% of them requests lasting
25 minutes to 3 hours. It starts the Lago emulator in a process of its own holding what
production holds: for 78% of the billable rows the event LiteLLM's live callback sent (random
id, Lago's reception time), for 20% reconcile's own event from an earlier run (its id, string
cost), 2% lost; plus duplicated callback events (0.1%) and events of no request (0.02%),
unexplained. Then it runs `reconcile backfill` over the day as a fresh process (the day is
read in chunks of 20,000 rows), after an untimed dry run that warms Postgres' cache and the
emulator's pages, and, in the same run, `psql -c "COPY (<the reader's SELECT of
the day>) TO STDOUT"` into /dev/null. It prints the time of each stage, the whole run beside
the raw COPY (target: at most 5 times), the Lago requests made beside the naive approach's
(list at per_page=100, one POST per missing event; target: at most 5%), and peak RSS
(target: under 1 GB). Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
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
from reconcile.postgres import Database, connect
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import open_snapshot, spend_log_columns, window_query
from reconcile.testing.embedded import any_postgres
from reconcile.testing.factory import SpendLog, SpendLogFactory, insert_spend_logs
from reconcile.testing.litellm_schema import (
    create_database,
    drop_database,
    ensure_template,
    psql_command,
)
from reconcile.window import UTC, Window

DAY = dt.date(2026, 11, 1)
CODE = "openai_tokens"
KEY = "bench-key"
EMULATOR = """
import gc, json, sys
from reconcile.lago_emulator import LagoEmulator
from reconcile.lago.events import parse_time
events, receptions = [], {}
with open(sys.argv[1]) as lines:
    for line in lines:
        item = json.loads(line)
        if item["received"]:  # the callback's: stamped on reception; ours carry a timestamp
            receptions[item["event"]["transaction_id"]] = parse_time(item["received"])
        events.append(item["event"])
with LagoEmulator(api_key=sys.argv[2]) as lago:
    lago.preload(events, received=lambda event: receptions.get(event["transaction_id"], lago.now()))
    del events, receptions
    lago.warm()  # encode once, as a Lago serving from its database would not pay per listing
    gc.freeze()  # the cached pages need no garbage collection
    print(lago.url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(database: Database, rows: int, lago_file: Path) -> int:
    """Write the day's rows and its neighbours'; what Lago holds of them into `lago_file`."""
    rng = random.Random(rows)  # noqa: S311 - reproducible data, not secrets
    factory = SpendLogFactory(seed=rows)
    days = [
        (DAY - dt.timedelta(days=1), rows // 4),
        (DAY, rows),
        (DAY + dt.timedelta(days=1), rows // 4),
    ]
    logs = [_lengthen(row, rng) for day, count in days for row in factory.day(day, count)]
    started = time.monotonic()
    with connect(database) as connection:
        written = insert_spend_logs(connection, logs)
        connection.commit()
    with connect(database, autocommit=True) as connection:
        connection.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
        connection.execute("CHECKPOINT")  # the load's writes are not the run's to pay for
    fates = {
        row.request_id: rng.random() for row in logs if row.status == "success" and row.end_user
    }
    ours = _our_events(database, days, {name for name, draw in fates.items() if draw < 0.20})
    with lago_file.open("w") as out:
        for row in logs:
            draw = fates.get(row.request_id)
            if draw is None:
                continue
            if draw < 0.20:  # billed by an earlier run of ours: its id, its string cost
                out.write(
                    json.dumps({"event": json.loads(ours[row.request_id]), "received": None}) + "\n"
                )
            elif draw < 0.98:  # billed by LiteLLM's live callback
                _write_callback(out, row, rng)
                if rng.random() < 0.001:  # the callback fired twice
                    _write_callback(out, row, rng)
            if rng.random() < 0.0002:  # an event of no request LiteLLM logged
                _write_callback(out, dataclasses.replace(row, end_user="nobody-known"), rng)
    log(f"  wrote {written:,} rows in {time.monotonic() - started:.0f} s")
    return written


def _lengthen(row: SpendLog, rng: random.Random) -> SpendLog:
    """One request in a thousand streams for 25 minutes to 3 hours: longer than --max-delay."""
    if rng.random() >= 0.001:
        return row
    return dataclasses.replace(row, end=row.start + dt.timedelta(minutes=rng.randint(25, 180)))


def _our_events(
    database: Database, days: list[tuple[dt.date, int]], chosen: set[str]
) -> dict[str, str]:
    """reconcile's own events (JSON lines) of the chosen request ids, as an earlier run sent."""
    sink = io.BytesIO()
    window = Window(
        dt.datetime.combine(days[0][0], dt.time(), tzinfo=UTC),
        dt.datetime.combine(days[-1][0], dt.time(), tzinfo=UTC) + dt.timedelta(days=1),
    )
    commands.events(database, window=window, charge_by=ChargeBy.END_USER_ID, code=CODE, sink=sink)
    found = {}
    for line in sink.getvalue().decode().splitlines():
        name = json.loads(line)["properties"]["litellm_request_id"]
        if name in chosen:
            found[name] = line
    return found


def _write_callback(out: object, row: SpendLog, rng: random.Random) -> None:
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
    received = row.end.replace(tzinfo=UTC) + dt.timedelta(milliseconds=rng.randint(40, 3000))
    out.write(json.dumps({"event": event, "received": received.isoformat()}) + "\n")  # type: ignore[attr-defined]


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


@contextlib.contextmanager
def emulated(lago_file: Path) -> Iterator[str]:
    """The emulator in a process of its own, preloaded with the file's events: its URL."""
    started = time.monotonic()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, str(lago_file), KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = emulator.stdout.readline().strip() if emulator.stdout else ""
    log(f"  emulator at {url} preloaded in {time.monotonic() - started:.0f} s")
    try:
        yield url
    finally:
        if emulator.stdin:
            emulator.stdin.close()
        emulator.wait()


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
            callback_file = Path(folder) / "lago.jsonl"
            fill(database, arguments.rows, callback_file)
            commands.migrate(commands.StateSettings(database))
            with emulated(callback_file) as url:
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
                # A dry run first, untimed: Postgres' cache and the emulator's pages warm, as on
                # a server that has been up (this is the emulator's first-touch cost, not ours).
                timed([*command, "--dry-run"], environment, ok=(3,))  # 3: events missing
                whole, peak = timed(command, environment)
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
    unexplained = {reason: value["events"] for reason, value in counts["unexplained"].items()}
    print(
        f"billable rows {billable:,}; Lago events listed {counts['listed']:,}; billed by our "
        f"events {counts['matched_by_id']:,}, by the callback's "
        f"{counts['matched_by_fingerprint']:,}; missing {counts['missing']:,}; sent "
        f"{counts['sent']:,}; unexplained {unexplained}"
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
