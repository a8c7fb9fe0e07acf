"""The command line as cron and people meet it: outputs, precedence, errors and exit codes."""

import csv
import dataclasses
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ENV_NAMES, at

from reconcile.cli import cli, main
from reconcile.errors import Interrupted
from reconcile.postgres import Database
from reconcile.testing.factory import SpendLogFactory


def url_of(database: Database) -> str:
    return database.url()


pytestmark = pytest.mark.usefixtures("clean_environment")


@dataclasses.dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def run(args: list[str], env: dict[str, str] | None = None) -> Outcome:
    """`reconcile.cli.main` in-process (our error handling and exit codes included)."""
    with CliRunner().isolation(env=env) as (stdout, stderr, _):
        try:
            main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, stdout.getvalue().decode(), stderr.getvalue().decode())


def reconcile(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        env={**{k: v for k, v in os.environ.items() if k not in ENV_NAMES}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def day_of_logs(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> Database:
    insert(*factory.day(at(0).date(), 400))
    return litellm_db


WINDOW = ["--since", "2026-11-01", "--until", "2026-11-02"]


def test_events_go_to_stdout_and_the_summary_to_stderr(day_of_logs: Database) -> None:
    result = run(
        ["events", *WINDOW],
        env={"DATABASE_URL": url_of(day_of_logs), "LAGO_API_EVENT_CODE": "tokens"},
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(event["code"] == "tokens" for event in events)
    assert "billable" in result.stderr and f"wrote {len(events):,} events" in result.stderr
    assert "{" not in result.stderr


def test_options_beat_environment_variables(day_of_logs: Database) -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "LAGO_API_EVENT_CODE": "from_env",
           "LAGO_API_CHARGE_BY": "user_id"}  # fmt: skip
    result = run(
        [
            "events",
            *WINDOW,
            "--database-url",
            url_of(day_of_logs),
            "--event-code",
            "from_option",
            "--charge-by",
            "team_id",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {event["code"] for event in events} == {"from_option"}
    assert {event["external_subscription_id"] for event in events} <= {
        "team-search",
        "team-support",
        "team-ml",
        "team-growth",
        "team-infra",
    }
    assert "charge-by  team_id (column team_id)" in result.stderr


def test_csv_to_a_file(day_of_logs: Database, tmp_path: Path) -> None:
    target = tmp_path / "events.csv"
    result = run(["events", *WINDOW, "--format", "csv", "-o", str(target), "--event-code", "t",
                  "--database-url", url_of(day_of_logs)])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert rows and rows[0]["code"] == "t"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert [path.name for path in tmp_path.iterdir()] == ["events.csv"]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_writing_to_dev_null_leaves_the_device_alone(day_of_logs: Database) -> None:
    result = run(
        [
            "events",
            *WINDOW,
            "-o",
            os.devnull,
            "--event-code",
            "t",
            "--database-url",
            url_of(day_of_logs),
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(Path(os.devnull).stat().st_mode)


def test_a_failed_run_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    result = run(["events", *WINDOW, "-o", str(target), "--event-code", "t",
                  "--database-url", "postgresql://postgres@127.0.0.1:1/none"])  # fmt: skip
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


ERRORS = {
    "unknown charge-by from env": (
        {"LAGO_API_CHARGE_BY": "customer"}, [], 2, "LAGO_API_CHARGE_BY='customer' is not a charge-by mode"),
    "unknown charge-by from option": (
        {}, ["--charge-by", "customer"], 2, "--charge-by='customer' is not a charge-by mode"),
    "no event code": ({"LAGO_API_EVENT_CODE": ""}, [], 2, "LAGO_API_EVENT_CODE (or --event-code) is not set"),
    "no database url": ({"DATABASE_URL": ""}, [], 2, "DATABASE_URL (or --database-url) is not set"),
    "malformed url": ({"DATABASE_URL": "postgresql://u:secret-pass@host:port/db"}, [], 2, "DATABASE_URL is not a valid URL"),
    "not postgres": ({"DATABASE_URL": "mysql://u:secret-pass@h/db"}, [], 2, "is a 'mysql' URL"),
    "unknown url parameter": ({}, ["--database-url", "postgresql://u:secret-pass@127.0.0.1/db?bogus=1"], 2,
                              'invalid URI query parameter: "bogus"'),
    "unreachable": ({"DATABASE_URL": "postgresql://u:secret-pass@127.0.0.1:1/db"}, [], 1,
                    "cannot connect (Connection refused"),
    "unknown database": ({}, ["--database-url", "postgresql://postgres:secret-pass@127.0.0.1/no_such_db"], 2,
                         'database "no_such_db" does not exist'),
    "bad --since": ({}, ["--since", "yesterday"], 2, "--since 'yesterday' is not a date or time"),
    "empty window": ({}, ["--since", "2026-11-03"], 2, "the window is empty"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("env", "args", "code", "message"), list(ERRORS.values()), ids=list(ERRORS)
)
def test_bad_settings_end_in_one_line_and_a_documented_exit_code(
    env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    base = {"DATABASE_URL": "postgresql://postgres@127.0.0.1/postgres", "LAGO_API_EVENT_CODE": "t"}
    window = dict(zip(WINDOW[::2], WINDOW[1::2], strict=True))
    for option in args[::2]:
        window.pop(option, None)
    argv = ["events", *[item for pair in window.items() for item in pair], *args]
    result = run(argv, env={**base, **env})
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("reconcile: error: "), result.stderr
    assert message in lines[0]
    assert "secret-pass" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_database_without_litellms_table_is_a_configuration_error(pg_admin: Database) -> None:
    result = run(["events", *WINDOW, "--event-code", "t", "--database-url", pg_admin.url()])
    assert result.exit_code == 2, result.stderr
    assert 'has no "LiteLLM_SpendLogs" table' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_password_is_a_configuration_error(scram_server: Database) -> None:
    wrong = scram_server.replace(password="not-the-password")
    result = run(["events", *WINDOW, "--event-code", "t", "--database-url", wrong.url()])
    assert result.exit_code == 2, result.stderr
    assert "the password was refused: fix the user or password" in result.stderr
    assert "not-the-password" not in result.stderr


@pytest.fixture(scope="module")
def scram_server() -> Iterator[Database]:
    """An embedded server that really checks passwords (the shared test server trusts everyone)."""
    from reconcile.postgres import connect
    from reconcile.testing.embedded import embedded_postgres

    with embedded_postgres() as admin:
        with connect(admin, autocommit=True) as connection:
            connection.execute("SET password_encryption = 'scram-sha-256'")
            connection.execute("CREATE ROLE strict LOGIN PASSWORD 'the-password'")
            hba = connection.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
            Path(hba).write_text("local all strict scram-sha-256\n" + Path(hba).read_text())
            connection.execute("SELECT pg_reload_conf()")
        yield admin.replace(user="strict", password="the-password")


def test_debug_shows_the_traceback_but_still_no_secret() -> None:
    result = reconcile("events", *WINDOW, "--debug", "--event-code", "t",
                       env={"DATABASE_URL": "postgresql://u:secret-pass@127.0.0.1:1/db"})  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "secret-pass" not in result.stderr + result.stdout


def test_python_dash_m_runs_the_same_cli(day_of_logs: Database) -> None:
    result = reconcile(
        "events", *WINDOW, "--event-code", "t", env={"DATABASE_URL": url_of(day_of_logs)}
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) > 300


def test_usage_errors_exit_2() -> None:
    result = reconcile("events", "--until", "2026-11-02")
    assert result.returncode == 2
    assert "Missing option '--since'" in result.stderr


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_explains_itself_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "Exit codes:" in result.output


def test_the_help_names_every_environment_variable() -> None:
    result = CliRunner().invoke(cli, ["events", "--help"])
    for name in ("DATABASE_URL", "LAGO_API_EVENT_CODE", "LAGO_API_CHARGE_BY"):
        assert name in result.output


def test_the_lago_emulator_serves_until_interrupted() -> None:
    import signal

    import httpx

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile",
            "lago-emulator",
            "--port",
            "0",
            "--store",
            "clickhouse",
        ],
        env={
            **{k: v for k, v in os.environ.items() if k not in ENV_NAMES},
            "LAGO_API_KEY": "emulated",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        listed = httpx.get(f"{url}/api/v1/events", headers={"Authorization": "Bearer emulated"})
        assert listed.status_code == 200
        assert listed.json()["meta"]["total_count"] == 0
        assert (
            httpx.get(f"{url}/api/v1/events", headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "clickhouse store" in errors


def test_the_lago_emulator_on_a_taken_port_exits_2_naming_the_port() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["lago-emulator", "--port", str(port)])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"reconcile: error: port {port} is taken on 127.0.0.1: choose another --port "
        "(0 picks a free one), or stop what listens there"
    ]
    documented = " ".join(CliRunner().invoke(cli, ["lago-emulator", "--help"]).output.split())
    assert "2 usage error, or --host/--port cannot be listened on (the port is taken" in documented


def test_the_lago_emulator_on_an_address_not_of_this_machine_exits_2() -> None:
    result = run(["lago-emulator", "--host", "192.0.2.1", "--port", "0"])  # TEST-NET-1
    assert result.exit_code == 2, result.stderr
    assert "--host '192.0.2.1' is no address of this machine" in result.stderr


def test_a_cleanup_a_signal_cut_short_failing_in_turn_is_still_the_signal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM mid-query: the rollback on the way out fails ("another command is already in
    progress"); what happened is the signal (exit 5), not an internal error."""

    def signal_arrives() -> None:
        raise Interrupted("interrupted by SIGTERM")

    def interrupted_then_failed(*_: object, **__: object) -> None:
        try:
            signal_arrives()
        except Interrupted:
            raise OSError("another command is already in progress") from None

    monkeypatch.setattr(cli, "main", interrupted_then_failed)
    with pytest.raises(SystemExit) as exit_:
        main(["report"])
    assert exit_.value.code == 5
    assert capsys.readouterr().err == "reconcile: interrupted by SIGTERM\n"
