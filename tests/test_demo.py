"""`reconcile demo`: the newcomer's first command works with nothing but the package."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_job_on_an_embedded_postgres(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
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
            "2000",
            "--day",
            "2026-11-01",
            "-o",
            str(target),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sample = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(sample) == 3
    everything = [json.loads(line) for line in target.read_text().splitlines()]
    assert everything[:3] == sample
    billable = int(re.search(r"billable\s+([\d,]+)", done.stderr).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert len(everything) == billable > 1500
    assert re.search(r"all rows read\s+2,000", done.stderr)
    assert len({event["transaction_id"] for event in everything}) == len(everything)
    assert all(event["code"] == "openai_tokens" for event in everything)
    assert "pgserver" in done.stderr and "Traceback" not in done.stderr
