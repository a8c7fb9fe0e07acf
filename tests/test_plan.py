"""The backfill's plan as people read it: top customers, the rest summed, the total, then the question."""

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal

import pandas as pd
from conftest import DAY, ENV_NAMES, LAGO_KEY
from test_reconcile_e2e import job

from reconcile import render
from reconcile.attribute import Tally
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database
from reconcile.report.display import width
from reconcile.results import Plan, RunSummary
from reconcile.testing.factory import SpendLogFactory


def plan_of(customers: dict[str, list[str]]) -> Plan:
    events = [
        {"external_subscription_id": name, "properties": {"response_cost": cost}}
        for name, costs in customers.items()
        for cost in costs
    ]
    frame = pd.DataFrame(
        {
            "subscription": list(customers),
            "events": [len(costs) for costs in customers.values()],
            "spend": [sum(map(Decimal, costs), Decimal(0)) for costs in customers.values()],
        }
    )
    spend = sum((Decimal(cost) for costs in customers.values() for cost in costs), Decimal(0))
    return Plan(count=len(events), spend=spend, by_customer=frame, sample=tuple(events[:5]))


def cells(line: str) -> list[str]:
    return line.split()


def test_the_plan_names_the_top_customers_sums_the_rest_and_gives_the_total() -> None:
    customers = {f"cust_{n:02}": ["0.1"] * (n + 1) for n in range(50)}
    lines = render.plan_lines(plan_of(customers), top=20)
    assert lines[1].split()[0] == "cust_49"  # most spend first
    assert len(lines) == 1 + 20 + 2
    assert "… and 30 more customers" in lines[-2]
    rest = sum(n + 1 for n in range(30))
    assert cells(lines[-2])[-2:] == [f"{rest:,}", f"{Decimal('0.1') * rest:.6f}"]
    total = sum(n + 1 for n in range(50))
    assert "total (50 customers)" in lines[-1]
    assert cells(lines[-1])[-2:] == [f"{total:,}", f"{Decimal('0.1') * total:.6f}"]


def test_a_small_plan_has_no_rest_line_and_wide_ids_line_up() -> None:
    customers = {"客户-北京": ["0.5"], "🚀-team": ["0.25", "0.25"], "acme": ["0.000001"]}
    lines = render.plan_lines(plan_of(customers))
    assert not any("more customer" in line for line in lines)
    assert "total (3 customers)" in lines[-1]
    assert len({width(line) for line in lines}) == 1  # every right edge in one column


def test_on_a_terminal_the_plan_comes_before_the_question_and_no_sends_nothing(
    litellm_db: Database,
    insert: Callable[..., None],
    factory: SpendLogFactory,
    lago: LagoEmulator,
) -> None:
    insert(*factory.day(DAY, 1500))  # more events than --confirm-above's 1,000
    env = {
        **{name: value for name, value in os.environ.items() if name not in ENV_NAMES},
        "DATABASE_URL": litellm_db.url(),
        "LAGO_API_BASE": lago.url,
        "LAGO_API_KEY": LAGO_KEY,
        "LAGO_API_EVENT_CODE": "openai_tokens",
    }
    command = [sys.executable, "-m", "reconcile"]
    migrated = subprocess.run([*command, "migrate"], env=env, capture_output=True, check=False)
    assert migrated.returncode == 0, migrated.stderr
    terminal, keyboard = pty.openpty()
    os.write(terminal, b"n\n")  # typed ahead: read once the question is asked
    answered = subprocess.run(
        [*command, "backfill", "--since", "2026-11-01", "--until", "2026-11-02"],
        env=env,
        stdin=keyboard,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    os.close(terminal)
    os.close(keyboard)
    stderr = answered.stderr
    assert answered.returncode == 3, stderr
    question = stderr.index("Send these")
    assert stderr.index("to send, per customer") < question
    assert stderr.index("total (") < question
    assert lago.stored_events() == []


def test_a_summary_with_no_stage_timed_says_no_time() -> None:
    """A worker that found no part to work on timed nothing: no dangling "Time: ."."""
    summary = RunSummary(run_id=1, settings=job(), tally=Tally())
    text = render.run_summary(summary, lago="http://lago")
    assert text.splitlines()[-1] == "Lago requests: 0."
    summary.seconds["read and match"] = 1.25
    assert render.run_summary(summary, lago="http://lago").endswith(
        "Lago requests: 0. Time: read and match 1.2 s."
    )
