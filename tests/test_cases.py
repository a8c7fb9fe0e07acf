"""Every shape in ../shared/cases/ through the command line, with its right outcome.

Each case's SQL goes into a fresh LiteLLM database (the real schema), its events into the
Lago emulator over HTTP, as LiteLLM's callback delivered them; then `migrate`, `backfill
--dry-run`, `backfill`, `backfill` again and `report --format csv --check`, at the default
read chunk and at chunks of 1 and 2 rows.
"""

import csv
import dataclasses
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LAGO_KEY as KEY
from test_cli import Outcome, run

from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect

CODE = "llm_usage"
WINDOW = ["--since", "2026-11-28", "--until", "2026-11-29"]
pytestmark = pytest.mark.usefixtures("clean_environment")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    sent: int  # events the first backfill sends
    check: int = 0  # exit code of `report --check`
    unexplained: dict[str, int] = dataclasses.field(default_factory=dict)
    window: tuple[str, ...] = tuple(WINDOW)


CASES = [
    Case("baseline", sent=1),
    Case("f1_bedrock", sent=0),
    Case("model_prefix", sent=0),
    Case("negative_spend", sent=1),
    Case("f4_no_rows", sent=0, check=3, unexplained={"no such request": 1}),
    Case("route_drops_user", sent=0, check=3, unexplained={"no such request": 1}),
    Case("null_model_event", sent=0),
    Case("null_model_mixed", sent=0),
    Case("twoday", sent=0, check=3, unexplained={"no such request": 1},
         window=("--since", "2026-11-27", "--until", "2026-11-29")),
    Case("long_request", sent=0),
    Case("huge_spend", sent=5),
    Case("dup_callback", sent=0, check=3, unexplained={"duplicate": 1}),
]  # fmt: skip


@dataclasses.dataclass
class Ran:
    """The five commands of one case, and what they left behind."""

    dry_run: Outcome
    first: Outcome
    second: Outcome
    report: Outcome
    lago: LagoEmulator
    database: Database

    def lines(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.report.stdout)))

    def total(self) -> dict[str, str]:
        return self.lines()[-1]

    def ledger(self, query: str) -> list[tuple[Any, ...]]:
        with connect(self.database) as connection:
            return connection.execute(query).fetchall()  # type: ignore[arg-type]


def run_case(
    case: Case, cases_dir: Path, database: Database, lago: LagoEmulator, chunk_rows: int | None
) -> Ran:
    sql = cases_dir / f"{case.name}.sql"
    if sql.exists():
        with connect(database) as connection:
            connection.execute(sql.read_text())  # type: ignore[arg-type]
            connection.commit()
    with httpx.Client(base_url=lago.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for line in (cases_dir / f"{case.name}.events.jsonl").read_text().splitlines():
            if line.strip():
                http.post("/api/v1/events", json=json.loads(line)).raise_for_status()
    env = {"DATABASE_URL": database.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE, "LAGO_API_CHARGE_BY": "end_user_id"}  # fmt: skip
    chunks = ["--chunk-rows", str(chunk_rows)] if chunk_rows else []
    assert run(["migrate"], env=env).exit_code == 0
    window = list(case.window)
    return Ran(
        dry_run=run(["backfill", *window, *chunks, "--dry-run"], env=env),
        first=run(["backfill", *window, *chunks], env=env),
        second=run(["backfill", *window, *chunks], env=env),
        report=run(["report", *window, *chunks, "--format", "csv", "--check"], env=env),
        lago=lago,
        database=database,
    )


@pytest.fixture(params=[None, 1, 2], ids=["default-chunks", "chunks-of-1", "chunks-of-2"])
def chunk_rows(request: pytest.FixtureRequest) -> int | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def cases_dir(shared_dir: Path) -> Path:
    return shared_dir / "cases"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_has_its_right_outcome(
    case: Case, cases_dir: Path, litellm_db: Database, lago: LagoEmulator, chunk_rows: int | None
) -> None:
    ran = run_case(case, cases_dir, litellm_db, lago, chunk_rows)
    for step in (ran.dry_run, ran.first, ran.second, ran.report):
        assert "internal error" not in step.stderr, step.stderr
    assert ran.dry_run.exit_code == (3 if case.sent else 0), ran.dry_run.stderr
    assert ran.first.exit_code == 0, ran.first.stderr
    assert ran.second.exit_code == 0, ran.second.stderr
    assert ran.report.exit_code == case.check, ran.report.stderr
    sent = ran.ledger("SELECT count(*) FROM litellm_reconcile.sent_events WHERE status = 'sent'")
    assert sent == [(case.sent,)]
    counts = ran.ledger("SELECT counts FROM litellm_reconcile.runs ORDER BY id")
    assert [run_counts["sent"] for (run_counts,) in counts] == [0, case.sent, 0]
    assert counts[2][0]["missing"] == 0  # the second backfill finds everything in Lago
    total = ran.total()
    assert int(total["missing_events"]) == 0
    unexplained = {
        reason: int(total[f"{field}_events"])
        for reason, field in (("duplicate", "duplicate"), ("property mismatch",
                              "property_mismatch"), ("no such request", "no_such_request"))
        if int(total[f"{field}_events"])
    }  # fmt: skip
    assert unexplained == case.unexplained
    assert {reason: value["events"] for reason, value in counts[1][0]["unexplained"].items()} == (
        case.unexplained
    )


def test_a_negative_cost_is_never_sent_and_is_counted_apart(
    cases_dir: Path, litellm_db: Database, lago: LagoEmulator
) -> None:
    ran = run_case(CASES[3], cases_dir, litellm_db, lago, None)
    stored = [event["properties"]["response_cost"] for event in lago.stored_events()]
    assert stored == ["0.0021"]
    assert "negative cost (never sent)" in ran.first.stderr
    assert ran.first.stderr.count("have a negative cost (-0.847665") == 1  # said once
    (counts,) = ran.ledger("SELECT counts FROM litellm_reconcile.runs WHERE counts->>'sent' = '1'")
    assert counts[0]["rows"]["negative_cost"] == {
        "rows": 1,
        "spend": "-0.847665",
        "rows_with_spend": 1,
    }
    line = next(line for line in ran.lines() if line["customer"] == "cust-2")
    assert (line["negative_cost_requests"], line["negative_cost_spend"]) == ("1", "-0.847665")
    assert (line["spend"], line["status"]) == ("0.0021", "ok")
    assert "negative cost" in ran.report.stderr


def test_huge_and_tiny_costs_keep_every_digit(
    cases_dir: Path, litellm_db: Database, lago: LagoEmulator
) -> None:
    ran = run_case(CASES[10], cases_dir, litellm_db, lago, None)
    stored = sorted(event["properties"]["response_cost"] for event in lago.stored_events())
    assert stored == sorted(["1620", "15000000000000000", "0.0000000001", "0.1", "0.2"])
    exact = "15000000000001620.3000000001"
    assert ran.total()["spend"] == exact
    (counts,) = ran.ledger("SELECT counts FROM litellm_reconcile.runs WHERE counts->>'sent' = '5'")
    assert counts[0]["rows"]["billable"]["spend"] == exact
    assert counts[0]["sent_spend"] == exact
    assert ran.ledger("SELECT sum(response_cost)::text FROM litellm_reconcile.sent_events") == [
        (exact,)
    ]
    # The summary's columns stay apart however wide the amounts.
    line = next(
        line for line in ran.first.stderr.splitlines() if line.strip().startswith("billable")
    )
    assert line.split()[1:] == ["5", "15,000,000,000,001,620.3000000001"]
    assert Decimal(counts[0]["missing_spend"]) == Decimal(exact)


def test_a_two_day_report_renders_both_days(
    cases_dir: Path, litellm_db: Database, lago: LagoEmulator
) -> None:
    case = CASES[8]
    run_case(case, cases_dir, litellm_db, lago, None)
    env = {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url, "LAGO_API_KEY": KEY,
           "LAGO_API_EVENT_CODE": CODE}  # fmt: skip
    document = run(["report", *case.window, "--format", "json"], env=env)
    assert document.exit_code == 0, document.stderr
    days = [entry["day"] for entry in json.loads(document.stdout)["daily"]]
    assert days == ["2026-11-27", "2026-11-28"]
