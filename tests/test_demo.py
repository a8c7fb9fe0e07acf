"""`reconcile demo`: the newcomer's first command works with nothing but the package."""

import json
import os
import re
import subprocess
import sys


def count(label: str, text: str) -> list[int]:
    return [int(found.replace(",", "")) for found in re.findall(rf"{label}\s+([\d,]+)", text)]


def test_demo_runs_the_whole_loop_on_an_embedded_postgres_and_the_emulator() -> None:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "DATABASE_URL"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconcile",
            "demo",
            "--rows",
            "3000",
            "--day",
            "2026-11-01",
            "--delivered",
            "0.9",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    sample = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(sample) == 3
    assert all(event["transaction_id"].startswith("rc1-") for event in sample)
    first, second = done.stderr.split("nightly run 2")[-2:]
    # The first night backfills what the callback lost; the second finds nothing left.
    missing, sent = count("missing from Lago", first)[-1], count("sent now", first)[-1]
    assert missing == sent > 100
    assert count("billable rows billed by the callback", first)[-1] > 2000
    assert count("missing from Lago", second) == [0]
    assert count("billable rows billed by our events", second)[0] > 0
    assert count("unexplained Lago events in the window", done.stderr) == [0, 0]
    # Each run ends with the report's summary; the day's report after both shows nothing owed.
    assert done.stderr.count("0 under-billed, 0 over-billed") >= 2
    report = done.stderr.split("reconcile report for the day, after both runs")[-1]
    totals = next(line for line in report.splitlines() if line.startswith("TOTAL"))
    assert "under-billed" not in report.split("TOTAL")[0]
    assert totals.split()[1] == "3,000"  # every request of the day is in the report
