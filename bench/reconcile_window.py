"""Benchmark reconciling windows of several days slice by slice, at two sizes, in one run.

    python bench/reconcile_window.py                          # 1,000,000 and 5,000,000 rows
    python bench/reconcile_window.py --sizes 1000000 --per-day 250000

For each size it writes that many spend-log rows (LiteLLM's real schema) over as many days as
`--per-day` makes (the same traffic per day at every size, so a flat memory is a bounded one),
a quarter of a day's on the day before and after (the neighbours the margins read), 0.1% of
them requests lasting 25 minutes to 3 hours. Lago (the emulator, in a process of its own)
holds what production holds: for 78% of the billable rows the event LiteLLM's live callback
sent, for 20% reconcile's own event from an earlier run, 2% lost; duplicated callback events
(0.1%) and events of no request (0.02%), unexplained. Then, each a fresh process, it runs
`reconcile backfill` over the whole window (slices of an hour, after an untimed dry run that
warms Postgres' cache and the emulator's pages) and `psql -c "COPY (<the reader's SELECT of
the window>) TO STDOUT"` into /dev/null. It prints, per size: the whole run beside the raw
COPY (target: at most 3 times), peak RSS (target: under 300 MB, flat across sizes) and the
Lago requests made beside the naive way's (list at per_page=100, one POST per missing event;
target: at most 3%). Then, against the same Lago (the emulator restarted from the same
events) and a fresh ledger, the same backfill with `--workers 2` (parts of a day): wall time and
Lago requests beside the one worker's. Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from events_throughput import timed  # same folder: the child's peak RSS, polled
from reconcile_day import CODE, KEY, _lengthen, _write_callback, emulated

from reconcile import commands
from reconcile.postgres import Database, connect
from reconcile.settings import ChargeBy
from reconcile.spendlogs.read import open_snapshot, spend_log_columns, window_query
from reconcile.testing.embedded import any_postgres
from reconcile.testing.factory import SpendLogFactory, insert_spend_logs
from reconcile.testing.litellm_schema import (
    create_database,
    drop_database,
    ensure_template,
    psql_command,
)
from reconcile.window import UTC, Window

FIRST_DAY = dt.date(2026, 10, 1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(database: Database, rows: int, per_day: int, lago_file: Path) -> Window:
    """Write `rows` over whole days of `per_day` (and the neighbours'); Lago's into the file."""
    rng = random.Random(rows)  # noqa: S311 - reproducible data, not secrets
    factory = SpendLogFactory(seed=rows)
    days = math.ceil(rows / per_day)
    window = Window(
        dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=UTC),
        dt.datetime.combine(FIRST_DAY + dt.timedelta(days=days), dt.time(), tzinfo=UTC),
    )
    plan = [(FIRST_DAY - dt.timedelta(days=1), per_day // 4)]
    plan += [
        (FIRST_DAY + dt.timedelta(days=n), min(per_day, rows - n * per_day)) for n in range(days)
    ]
    plan += [(FIRST_DAY + dt.timedelta(days=days), per_day // 4)]
    started, written = time.monotonic(), 0
    with lago_file.open("w") as out:
        for day, count in plan:  # a day at a time: the benchmark's own memory stays small
            logs = [_lengthen(row, rng) for row in factory.day(day, count)]
            with connect(database) as connection:
                written += insert_spend_logs(connection, logs)
                connection.commit()
            fates = {
                row.request_id: rng.random()
                for row in logs
                if row.status == "success" and row.end_user
            }
            ours = _our_events(database, day, {name for name, draw in fates.items() if draw < 0.2})
            for row in logs:
                draw = fates.get(row.request_id)
                if draw is None:
                    continue
                if draw < 0.20:  # billed by an earlier run of ours: its id, its string cost
                    event = json.loads(ours[row.request_id])
                    out.write(json.dumps({"event": event, "received": None}) + "\n")
                elif draw < 0.98:  # billed by LiteLLM's live callback
                    _write_callback(out, row, rng)
                    if rng.random() < 0.001:  # the callback fired twice
                        _write_callback(out, row, rng)
                if rng.random() < 0.0002:  # an event of no request LiteLLM logged
                    _write_callback(out, dataclasses.replace(row, end_user="nobody-known"), rng)
            log(f"  {day}: {count:,} rows")
    with connect(database, autocommit=True) as connection:
        connection.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
        connection.execute("CHECKPOINT")  # the load's writes are not the run's to pay for
    log(f"  wrote {written:,} rows over {days} days in {time.monotonic() - started:.0f} s")
    return window


def _our_events(database: Database, day: dt.date, chosen: set[str]) -> dict[str, str]:
    """reconcile's own events (JSON lines) of the chosen request ids, as an earlier run sent."""
    sink = io.BytesIO()
    since = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    window = Window(since, since + dt.timedelta(days=1))
    commands.events(database, window=window, charge_by=ChargeBy.END_USER_ID, code=CODE, sink=sink)
    found = {}
    for line in sink.getvalue().decode().splitlines():
        name = json.loads(line)["properties"]["litellm_request_id"]
        if name in chosen:
            found[name] = line
    return found


def copy_seconds(database: Database, window: Window) -> float:
    with open_snapshot(database) as connection:
        query = window_query(
            connection, spend_log_columns(connection, database), ChargeBy.END_USER_ID, window
        )
    psql, environment = psql_command(database)
    seconds, _ = timed([*psql, "-c", f"COPY ({query}) TO STDOUT"], environment)
    return seconds


def reset_ledger(database: Database) -> None:
    with connect(database, autocommit=True) as connection:
        connection.execute("DROP SCHEMA litellm_reconcile CASCADE")
    commands.migrate(commands.StateSettings(database))


def last_counts(database: Database) -> dict[str, Any]:
    with connect(database) as connection:
        found = connection.execute(
            "SELECT counts FROM litellm_reconcile.runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return dict(found[0]) if found else {}


def measure(admin: Database, rows: int, per_day: int, folder: Path) -> dict[str, float]:
    name = f"reconcile_bench_{uuid.uuid4().hex[:8]}"
    database = create_database(admin, name, template=ensure_template(admin))
    try:
        lago_file = folder / f"lago-{rows}.jsonl"
        window = fill(database, rows, per_day, lago_file)
        command = [sys.executable, "-m", "reconcile", "backfill", "--since",
                   window.since.isoformat(), "--until", window.until.isoformat(), "--yes",
                   "--no-progress"]  # fmt: skip
        with emulated(lago_file) as url:
            environment = {**os.environ, "DATABASE_URL": database.url(), "LAGO_API_BASE": url,
                           "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
            commands.migrate(commands.StateSettings(database))
            timed([*command, "--dry-run"], environment, ok=(3,))  # untimed: caches warm
            whole, peak = timed(command, environment)
        raw = copy_seconds(database, window)
        counts = last_counts(database)
        with emulated(lago_file) as url:  # the same Lago again, a fresh ledger, 2 workers
            reset_ledger(database)
            environment["LAGO_API_BASE"] = url
            two, _ = timed([*command, "--workers", "2"], environment)
        two_counts = last_counts(database)
    finally:
        drop_database(admin, name)
    naive = math.ceil(counts["listed"] / 100) + counts["missing"]
    return {
        "two_workers": two, "two_requests": two_counts["lago_requests"],
        "two_sent": two_counts["sent"],
        "rows": counts["rows"]["billable"]["rows"], "listed": counts["listed"],
        "missing": counts["missing"], "sent": counts["sent"], "whole": whole, "raw": raw,
        "peak_mb": peak / 1024, "requests": counts["lago_requests"], "naive": naive,
        "unexplained": sum(value["events"] for value in counts["unexplained"].values()),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--per-day", type=int, default=250_000, help="rows per day")
    arguments = parser.parse_args()
    figures = []
    with any_postgres() as admin, tempfile.TemporaryDirectory() as folder:
        for rows in arguments.sizes:
            log(f"{rows:,} rows:")
            figures.append(measure(admin, rows, arguments.per_day, Path(folder)))
    print("| rows | billable | listed | missing / sent | unexplained | whole run (s) | raw COPY "
          "(s) | ratio (target <= 3x) | peak RSS (target < 300 MB) | Lago requests (target "
          "<= 3% of naive) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows, found in zip(arguments.sizes, figures, strict=True):
        print(
            f"| {rows:,} | {found['rows']:,} | {found['listed']:,} | {found['missing']:,} / "
            f"{found['sent']:,} | {found['unexplained']:,} | {found['whole']:.1f} | "
            f"{found['raw']:.1f} | {found['whole'] / found['raw']:.1f}x | "
            f"{found['peak_mb']:.0f} MB | {found['requests']:,} of {found['naive']:,} "
            f"({found['requests'] / found['naive']:.1%}) |"
        )
    print()
    print("| rows | 1 worker (s) | 2 workers (s) | speed-up | Lago requests, 1 / 2 workers | sent, "
          "1 / 2 workers |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for rows, found in zip(arguments.sizes, figures, strict=True):
        print(
            f"| {rows:,} | {found['whole']:.1f} | {found['two_workers']:.1f} | "
            f"{found['whole'] / found['two_workers']:.2f}x | {found['requests']:,} / "
            f"{found['two_requests']:,} | {found['sent']:,} / {found['two_sent']:,} |"
        )


if __name__ == "__main__":
    main()
