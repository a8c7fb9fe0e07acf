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
    total = next(line for line in report.splitlines() if "total (" in line)
    assert total.split()[3] == "3,000"  # every request of the day is in the report
    assert "not ok" not in report.split("checked against")[0]
    # The claim, checked against what Lago holds, in words.
    lost = count("lost by LiteLLM's live callback", done.stderr)
    assert lost == count("found missing by the first nightly run", done.stderr) == [missing]
    assert count("backfilled by reconcile", done.stderr) == [missing]
    assert re.search(r"the same requests as the lost ones\s+yes", done.stderr)
    assert re.search(r"every billable request billed exactly once\s+yes", done.stderr)
    assert "stdout: 3 of the" in done.stderr
    # Everything a person reads fits 100 columns.
    assert max(len(line) for line in done.stderr.splitlines()) <= 100
