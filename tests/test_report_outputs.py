"""What people read, read back: -o failures, rollup gaps and --check, --customer, XLSX percents,
CSV digits."""

import csv
import io
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import openpyxl
import pytest
from conftest import DAY, ENV_NAMES, LAGO_KEY
from test_cli import run
from test_reconcile_e2e import billable, callback
from test_report_formats import header, parse, read_csv, render

from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect
from reconcile.report.formats import ReportFormat
from reconcile.results import LINE_FIELDS, Line, Report, RollupState, Status
from reconcile.testing.factory import SpendLog, SpendLogFactory

pytestmark = pytest.mark.usefixtures("clean_environment")

WINDOW = ["--since", "2026-11-01", "--until", "2026-11-02"]
CODE = "openai_tokens"


@pytest.fixture
def rows(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> list[SpendLog]:
    written = list(factory.day(DAY, 120))
    insert(*written)
    return written


@pytest.fixture
def env(litellm_db: Database, rows: list[SpendLog], lago: LagoEmulator) -> dict[str, str]:
    """Every billable row delivered by the callback: every line is ok."""
    callback(lago, billable(rows))
    return {"DATABASE_URL": litellm_db.url(), "LAGO_API_BASE": lago.url,
            "LAGO_API_KEY": LAGO_KEY, "LAGO_API_EVENT_CODE": CODE}  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("reconcile: error:")]


# ---------------------------------------------------------------- -o: writing output


@pytest.fixture
def under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "somefile").write_text("not a directory")
    return tmp_path / "somefile" / "x.csv"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may create files in, root included (immutable), or skip."""
    directory = tmp_path / "locked"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
    elif subprocess.run(["chattr", "+i", directory], check=False, capture_output=True).returncode:
        pytest.skip("root without chattr +i: no directory is read-only to root here")
    yield directory / "x.csv"
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    directory.chmod(0o755)


TARGETS = {
    "full disk": (lambda _: Path("/dev/full"), "No space left on device"),
    "no such directory": (lambda tmp: tmp / "nonexistent-dir" / "x.csv", "No such file"),
    "a directory": (lambda tmp: tmp, "Is a directory"),
}


@pytest.mark.parametrize("target", list(TARGETS), ids=list(TARGETS))
@pytest.mark.parametrize("command", ["events", "report"])
def test_an_unwritable_output_is_one_line_exit_2_and_leaves_nothing(
    env: dict[str, str], tmp_path: Path, command: str, target: str
) -> None:
    make, reason = TARGETS[target]
    path = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = run([command, *WINDOW, "--format", "csv", "-o", str(path)], env=env)
    assert result.exit_code == 2, result.stderr
    [message] = error_lines(result.stderr)
    assert f"-o {path}: cannot write: {reason}" in message
    assert sorted(tmp_path.rglob("*")) == before  # no partial or temporary file


def test_a_path_under_a_file_or_in_a_read_only_directory_is_refused(
    env: dict[str, str], under_a_file: Path, read_only_dir: Path
) -> None:
    for path, reason in ((under_a_file, "Not a directory"), (read_only_dir, "not permitted")):
        result = run(["report", *WINDOW, "--format", "csv", "-o", str(path)], env=env)
        assert result.exit_code == 2, result.stderr
        [message] = error_lines(result.stderr)
        assert f"-o {path}: cannot write: " in message
        assert reason in message or "Permission denied" in message
    assert list(read_only_dir.parent.iterdir()) == []


def cli_process(
    *args: str,
    env: dict[str, str],
    limit_bytes: int | None = None,
    stdout: int | IO[Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The CLI in a real process, optionally unable to write files past `limit_bytes`."""

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        env={**{k: v for k, v in os.environ.items() if k not in ENV_NAMES}, **env},
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limit,
    )


def test_a_write_failing_midway_removes_its_temporary_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "events.jsonl"
    target.write_text("the previous export\n")
    # Past 4 KiB a write fails with EFBIG, as a full disk fails with ENOSPC: in a real process.
    done = cli_process("events", *WINDOW, "-o", str(target), env=env, limit_bytes=4096)
    assert done.returncode == 2, done.stderr
    [message] = error_lines(done.stderr)
    assert f"-o {target}: cannot write: File too large" in message
    assert target.read_text() == "the previous export\n"  # untouched, never half-replaced
    assert [path.name for path in tmp_path.iterdir()] == ["events.jsonl"]


def test_a_full_stdout_is_one_line_exit_2(env: dict[str, str]) -> None:
    with Path("/dev/full").open("wb") as full:
        done = cli_process("report", *WINDOW, "--format", "json", env=env, stdout=full)
    assert done.returncode == 2, done.stderr
    [message] = error_lines(done.stderr)
    assert "stdout: cannot write: No space left on device" in message
    assert "Exception ignored" not in done.stderr


# ---------------------------------------------------------------- rollup gaps and --check


def plant_rollup(database: Database, extra: Decimal) -> str:
    """A rollup row per customer of the day equal to its spend logs, `extra` USD more on one."""
    with connect(database) as connection:
        customers = [
            row[0]
            for row in connection.execute(
                """SELECT DISTINCT end_user FROM "LiteLLM_SpendLogs"
                   WHERE end_user <> '' ORDER BY 1"""
            )
        ]
        for customer in customers:
            connection.execute(
                """INSERT INTO "LiteLLM_DailyEndUserSpend"
                       (id, end_user_id, date, api_key, model, spend, api_requests, updated_at)
                   SELECT gen_random_uuid()::text, end_user, '2026-11-01', 'key', 'gpt-4o',
                          sum(spend) + %(extra)s, count(*), now()
                   FROM "LiteLLM_SpendLogs" WHERE end_user = %(customer)s GROUP BY end_user""",
                {"customer": customer, "extra": float(extra if customer == customers[0] else 0)},
            )
        connection.commit()
    return str(customers[0])


def test_a_rollup_gap_fails_check_and_is_in_the_summary_and_every_format(
    env: dict[str, str], litellm_db: Database, tmp_path: Path
) -> None:
    lost = plant_rollup(litellm_db, Decimal("1.00"))
    result = run(["report", *WINDOW, "--format", "json", "--check"], env=env)
    assert result.exit_code == 3, result.stderr
    document = json.loads(result.stdout)
    assert document["exceptions"] == 0  # every line is ok: the gap alone fails the check
    assert [gap["customer"] for gap in document["rollup_gaps"]] == [lost]
    check = document["rollup_check"]
    assert check["state"] == "compared" and check["gaps"] == 1
    assert abs(Decimal(check["lost_spend"]) - 1) < Decimal("1e-9")
    assert "rollup gaps 1 customer-day, 1.00 USD" in result.stderr  # the stderr summary
    assert "--check failed: 1 rollup gap(s), 1.00 USD lost" in result.stderr
    table = run(["report", *WINDOW, "--check"], env=env)  # the table on stdout: no summary
    assert table.exit_code == 3 and "--check failed" in table.stderr
    assert "Rollup gaps: LiteLLM's daily rollup holds more" in table.stdout


def test_no_rollup_rows_is_said_as_such_in_every_format(
    env: dict[str, str], tmp_path: Path
) -> None:
    said = "no rollup rows"
    outputs = {}
    for fmt in ("table", "md", "html", "json", "xlsx"):
        target = tmp_path / f"report.{fmt}"
        result = run(["report", *WINDOW, "--format", fmt, "-o", str(target), "--check"], env=env)
        assert result.exit_code == 0, result.stderr
        assert f"rollup      {said}" in result.stderr  # the summary
        outputs[fmt] = target
    for fmt in ("table", "md"):
        assert said in outputs[fmt].read_text().lower()
    page = parse(outputs["html"].read_text())
    text = " ".join(page.text)
    assert "No rollup rows" in text and "agree" not in text
    assert json.loads(outputs["json"].read_text())["rollup_check"]["state"] == said
    book = openpyxl.load_workbook(outputs["xlsx"])
    assert str(book["Rollup gaps"]["A3"].value).startswith(said)
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    assert str(summary["rollup check"]).startswith(said)


def test_a_rollup_that_agrees_says_how_much_it_compared(
    env: dict[str, str], litellm_db: Database
) -> None:
    plant_rollup(litellm_db, Decimal(0))
    result = run(["report", *WINDOW, "--format", "html", "--check"], env=env)
    assert result.exit_code == 0, result.stderr
    text = " ".join(parse(result.stdout).text)
    assert "None: the rollup and the spend logs agree on" in text and "customer-days" in text


# ---------------------------------------------------------------- --customer


def test_a_customer_with_no_rows_exits_2_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "report.csv"
    result = run(
        ["report", *WINDOW, "--customer", "nobody", "--customer", "ghost", "-o", str(target),
         "--format", "csv"], env=env,
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    [message] = error_lines(result.stderr)
    assert "--customer 'ghost', 'nobody': no spend-log row with that end_user_id" in message
    assert list(tmp_path.iterdir()) == []


def test_named_customers_that_exist_are_reported_and_the_others_warned_about(
    env: dict[str, str], rows: list[SpendLog]
) -> None:
    real = sorted({str(row.end_user) for row in billable(rows)})[0]
    result = run(["report", *WINDOW, "--customer", real, "--customer", "nobody"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "warning: --customer 'nobody': no spend-log row" in result.stderr
    assert real not in result.stderr
    assert real in result.stdout and "nobody" in result.stdout  # the header and the note
    as_csv = run(["report", *WINDOW, "--customer", real, "--customer", "nobody",
                  "--format", "csv"], env=env)  # fmt: skip
    customers = {row["customer"] for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert customers == {real, "TOTAL"}
    assert "note: --customer 'nobody'" in as_csv.stderr  # the summary's notes


# ---------------------------------------------------------------- XLSX percents, CSV digits


def report_of(*lines: Line) -> Report:
    totals = Line("TOTAL", "", spend=sum((line.spend for line in lines), Decimal(0)))
    return Report(header(), list(lines), totals, [], [], rollup_state=RollupState.NO_ROWS)


def test_xlsx_delta_percent_is_a_fraction_formulas_can_use(tmp_path: Path) -> None:
    line = Line("acme", "2026-11-01", spend=Decimal("1"), delta=Decimal("-4.4445"),
                delta_percent=Decimal("-444.4500"), status=Status.OVER_BILLED)  # fmt: skip
    target = tmp_path / "r.xlsx"
    target.write_bytes(render(report_of(line), ReportFormat.XLSX))
    sheet = openpyxl.load_workbook(target)["Customers"]
    cell = sheet.cell(row=2, column=LINE_FIELDS.index("delta_percent") + 1)
    assert cell.value == pytest.approx(-4.4445) and cell.number_format == "0.00%"


EXACT = r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?"
AMOUNTS = {
    Decimal(repr(0.1)) + Decimal(repr(0.2)): "0.3",
    Decimal("1e-9"): "0.000000001",
    Decimal("12345678.5"): "12345678.5",
    Decimal("12345678.50000"): "12345678.5",
    Decimal(0): "0",
    Decimal("0E-30"): "0",
    Decimal("-0.000"): "0",
    Decimal("-2.50"): "-2.5",
    Decimal("1.5E+3"): "1500",
    Decimal("3.000"): "3",
    Decimal("0.000123456789012345678"): "0.000123456789012345678",
}


def test_csv_amounts_follow_one_rule_exact_without_trailing_zeros_or_exponent() -> None:
    lines = [
        Line(
            f"c{index}",
            "2026-11-01",
            spend=amount,
            lago_cost=amount,
            delta=-amount,
            delta_percent=Decimal("-12.5000"),
        )
        for index, amount in enumerate(AMOUNTS)
    ]
    rows = read_csv(render(report_of(*lines), ReportFormat.CSV))
    column = {name: index for index, name in enumerate(rows[0])}
    for row, (amount, text) in zip(rows[1:], AMOUNTS.items(), strict=False):
        assert row[column["spend"]] == row[column["lago_cost"]] == text
        assert Decimal(row[column["delta"]]) == -amount
        assert row[column["delta_percent"]] == "-12.5"
    money = [name for name in LINE_FIELDS if isinstance(getattr(Line("", ""), name), Decimal)]
    for row in rows[1:]:
        for name in money:
            assert re.fullmatch(EXACT, row[column[name]]), (name, row[column[name]])


def test_real_report_csv_amounts_read_back_exactly(env: dict[str, str]) -> None:
    result = run(["report", *WINDOW, "--format", "csv"], env=env)
    assert result.exit_code == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    money = [name for name in LINE_FIELDS if isinstance(getattr(Line("", ""), name), Decimal)]
    for row in table:
        for name in money:
            assert re.fullmatch(EXACT, row[name]), (name, row[name])
    total = table[-1]
    assert sum(Decimal(row["spend"]) for row in table[:-1]) == Decimal(total["spend"])
