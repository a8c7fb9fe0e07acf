"""`--help` says what a newcomer needs: every exit code, every variable, DURATION, what is required."""

import re

import pytest
from click.testing import CliRunner

from reconcile import errors
from reconcile.cli import cli

EXIT_CODES = sorted(
    value
    for name, value in vars(errors).items()
    if name.startswith("EXIT_") and isinstance(value, int)
)


def help_of(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_top_level_help_lists_every_exit_code_and_every_variable() -> None:
    text = help_of()
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", text, re.MULTILINE), code
    variables = {
        param.envvar
        for command in cli.commands.values()
        for param in command.params
        if isinstance(param.envvar, str)
    }
    assert {"DATABASE_URL", "LAGO_API_BASE", "LAGO_API_KEY", "LAGO_API_EVENT_CODE"} <= variables
    for variable in variables | {"RECONCILE_DEBUG"}:
        assert re.search(rf"^\s+{variable}\s+--", text, re.MULTILINE), variable


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_duration_option_is_explained_where_it_is(name: str) -> None:
    text = help_of(name)
    if "DURATION" in text:
        assert "DURATION: a number and a unit" in text


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("backfill", "--database-url"),
        ("backfill", "--event-code"),
        ("backfill", "--lago-api-base"),
        ("backfill", "--lago-api-key"),
        ("report", "--lago-api-base"),
        ("events", "--database-url"),
    ],
)
def test_required_settings_say_so(command: str, option: str) -> None:
    text = help_of(command)
    described = text[text.index(option) :].split("\n  --", 1)[0]
    assert "Required." in " ".join(described.split()), described


def test_the_emulator_names_the_billing_listings_it_answers() -> None:
    text = " ".join(help_of("lago-emulator").split())
    assert "GET /api/v1/subscriptions" in text and "GET /api/v1/invoices" in text


def test_the_rule_for_rows_without_status_is_the_codes() -> None:
    text = " ".join(help_of("events").split())
    assert "or none, whatever the row's date" in text
