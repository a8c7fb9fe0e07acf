import pytest

from reconcile.errors import ConfigError
from reconcile.settings import ChargeBy, parse_charge_by, parse_event_code


@pytest.mark.parametrize(
    ("value", "mode", "column"),
    [
        ("end_user_id", ChargeBy.END_USER_ID, "end_user"),
        ("user_id", ChargeBy.USER_ID, "user"),
        ("team_id", ChargeBy.TEAM_ID, "team_id"),
        (" team_id\n", ChargeBy.TEAM_ID, "team_id"),
    ],
)
def test_charge_by_modes_map_to_litellm_columns(value: str, mode: ChargeBy, column: str) -> None:
    assert parse_charge_by(value) is mode
    assert mode.column == column


@pytest.mark.parametrize("value", ["", "customer_id", "END_USER_ID", "end_user", "team"])
def test_unknown_charge_by_names_the_setting_and_the_choices(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_charge_by(value, source="--charge-by")
    message = str(raised.value)
    assert message.startswith(f"--charge-by={value!r} is not a charge-by mode")
    assert "end_user_id, user_id, team_id" in message
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("code", ["openai_tokens", "litellm-usage", "tokens.v2", "coût"])
def test_event_codes_are_kept_verbatim(code: str) -> None:
    assert parse_event_code(code) == code


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("   ", "is not set"),
        (" tokens", "leading or trailing blanks"),
        ("tok\x1fens", "control characters"),
        ("tok\nens", "control characters"),
    ],
)
def test_bad_event_codes_are_refused(value: str | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        parse_event_code(value)
    assert "LAGO_API_EVENT_CODE" in str(raised.value)
