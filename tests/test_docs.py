"""The README stays true: its commands, settings and columns are the code's."""

from pathlib import Path

import click

from reconcile.build_events import CSV_COLUMNS
from reconcile.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert f"```sh\n{ci_lines[-1]}\n```" in README


def test_every_command_is_documented() -> None:
    for name in cli.commands:
        assert f"### `reconcile {name}" in README, name


def test_every_environment_variable_is_in_the_configuration_table() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in README.splitlines()
        if line.startswith("| `")
    }
    for command in cli.commands.values():
        for parameter in command.params:
            if isinstance(parameter, click.Option) and parameter.envvar:
                assert parameter.envvar in rows, parameter.envvar
                assert f"`{parameter.opts[-1]}`" in rows[parameter.envvar], parameter.opts


def test_csv_columns_are_documented_in_order() -> None:
    assert ", ".join(f"`{column}`" for column in CSV_COLUMNS) in " ".join(README.split())


def test_no_placeholder_is_left() -> None:
    assert "BENCH_TABLE" not in README
    assert "TODO" not in README
