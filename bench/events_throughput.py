"""Benchmark `reconcile events` against a raw COPY of the same query, at two sizes.

    python bench/events_throughput.py                 # 250,000 and 1,000,000 rows
    python bench/events_throughput.py --rows 200000   # 50,000 and 200,000 rows

For each size it builds a database with LiteLLM's real schema, writes that many spend-log
rows of one day (the demo's realistic mix), then times, alternating and best of --repeat:
  - `reconcile events` over the day, in its own process, to /dev/null;
  - `psql -c "COPY (<the same SELECT>) TO STDOUT"` into /dev/null: the raw export floor.
It prints rows/s of each, their ratio (target >= 0.5) and the peak RSS of reconcile
(target < 300 MB at 1M rows, flat across sizes). Figures go to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

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

DAY = dt.date(2026, 11, 1)
WINDOW = Window(
    dt.datetime.combine(DAY, dt.time(), tzinfo=UTC),
    dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), tzinfo=UTC),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(database: Database, rows: int) -> None:
    started = time.monotonic()
    with connect(database) as connection:
        insert_spend_logs(connection, SpendLogFactory(seed=rows).day(DAY, rows))
        connection.commit()
    with connect(database, autocommit=True) as connection:
        connection.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
    log(f"  wrote {rows:,} rows in {time.monotonic() - started:.0f} s")


def timed(
    command: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)
) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process, its output to /dev/null.

    An exit code outside `ok` stops the benchmark with the child's stderr.

    The peak is the child's VmHWM, polled: its rusage would also count the pages it shared
    with this (larger) process between fork and exec.
    """
    started = time.perf_counter()
    peak = 0
    with Path(os.devnull).open("wb") as devnull:
        process = subprocess.Popen(command, env=env, stdout=devnull, stderr=subprocess.PIPE)
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if process.returncode not in ok:
        errors = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"{command[:3]} failed: {errors}")
    return elapsed, peak


def measure(database: Database, rows: int, repeat: int) -> dict[str, float]:
    with open_snapshot(database) as connection:
        columns = spend_log_columns(connection, database)
        query = window_query(connection, columns, ChargeBy.END_USER_ID, WINDOW)
    psql, psql_env = psql_command(database)
    copy = [*psql, "-c", f"COPY ({query}) TO STDOUT"]
    events = [
        sys.executable, "-m", "reconcile", "events", "--since", str(DAY), "--until",
        str(DAY + dt.timedelta(days=1)), "-o", os.devnull,
    ]  # fmt: skip
    events_env = {**os.environ, "DATABASE_URL": database.url(), "LAGO_API_EVENT_CODE": "bench"}
    best_events, best_copy, peak = float("inf"), float("inf"), 0
    for attempt in range(repeat):
        seconds, rss = timed(events, events_env)
        best_events, peak = min(best_events, seconds), max(peak, rss)
        copy_seconds, _ = timed(copy, psql_env)
        best_copy = min(best_copy, copy_seconds)
        log(f"  run {attempt + 1}: events {seconds:.2f} s, COPY {copy_seconds:.2f} s")
    return {
        "rows": rows,
        "events_rows_per_s": rows / best_events,
        "copy_rows_per_s": rows / best_copy,
        "ratio": best_copy / best_events,
        "peak_rss_mb": peak / 1024,
    }


def run(sizes: list[int], repeat: int, admin: Database) -> list[dict[str, float]]:
    template = ensure_template(admin)
    results = []
    for rows in sizes:
        name = f"reconcile_bench_{uuid.uuid4().hex[:8]}"
        log(f"{rows:,} rows: database {name}")
        database = create_database(admin, name, template=template)
        try:
            fill(database, rows)
            results.append(measure(database, rows, repeat))
        finally:
            drop_database(admin, name)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="the larger size; the smaller is a quarter"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each, alternating; the best counts"
    )
    arguments = parser.parse_args()
    with any_postgres() as admin:
        results = run([arguments.rows // 4, arguments.rows], arguments.repeat, admin)
    print("| rows | reconcile events (rows/s) | raw COPY (rows/s) | ratio | peak RSS |")
    print("|---:|---:|---:|---:|---:|")
    for result in results:
        rows, events, copy = result["rows"], result["events_rows_per_s"], result["copy_rows_per_s"]
        ratio, rss = result["ratio"], result["peak_rss_mb"]
        print(f"| {rows:,.0f} | {events:,.0f} | {copy:,.0f} | {ratio:.2f} | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
