import pytest

from reconcile.errors import ConfigError
from reconcile.postgres import parse_database_url


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("postgresql://litellm:s3cret@db:5432/litellm", "postgresql://litellm:***@db:5432/litellm"),
        ("postgres://litellm:s3cret@db/litellm", "postgresql://litellm:***@db/litellm"),
        ("postgresql+psycopg2://litellm:s3cret@db/litellm", "postgresql://litellm:***@db/litellm"),
        ("postgresql://postgres:@/postgres?host=/tmp/x", "postgresql://postgres@/postgres?host=%2Ftmp%2Fx"),
        ("postgresql://litellm@db/litellm?sslmode=require", "postgresql://litellm@db/litellm?sslmode=require"),
        ("postgresql://u:p%40ss@db/x?schema=proxy&connection_limit=5&pool_timeout=10",
         "postgresql://u:***@db/x?schema=proxy"),
    ],
)  # fmt: skip
def test_litellm_style_urls_are_accepted_and_shown_without_password(raw: str, shown: str) -> None:
    database = parse_database_url(raw)
    assert str(database) == shown
    assert "s3cret" not in repr(database)
    assert "p%40ss" not in repr(database)
    assert parse_database_url(database.url()) == database


def test_prisma_parameters_become_a_search_path_or_go() -> None:
    database = parse_database_url(
        "postgresql://u:p%40ss@db/x?schema=proxy&connection_limit=5&pgbouncer=true"
    )
    assert database.schema == "proxy"
    assert dict(database.params) == {"user": "u", "password": "p@ss", "host": "db", "dbname": "x"}
    assert database.url() == "postgresql://u:p%40ss@db/x?schema=proxy"


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://db/x?connect_timeout=3&application_name=mine&sslmode=require",
        "postgresql://u@[::1]:5433/db",
        "postgresql://postgres@/postgres?host=%2Ftmp%2Fsocket",
        "postgresql://u:pw@/db?host=h1%2Ch2&port=5432%2C5433",
        "postgresql://us%20er:p%3Aw%2Fd@db:6432/my%20db",
    ],
)
def test_libpq_parameters_survive_a_round_trip(raw: str) -> None:
    database = parse_database_url(raw)
    assert parse_database_url(database.url()) == database


def test_a_database_can_be_derived_with_other_parameters() -> None:
    database = parse_database_url("postgresql://u:pw@db/x").replace(dbname="y", user="v")
    assert str(database) == "postgresql://v:***@db/y"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "DATABASE_URL is not set"),
        ("  ", "DATABASE_URL is not set"),
        ("just words", "DATABASE_URL is not a valid URL"),
        ("postgresql://u:secret@db:notaport/x", "DATABASE_URL is not a valid URL"),
        ("sqlite:///litellm.db", "DATABASE_URL is a 'sqlite' URL"),
        ("postgresql://u:secret@db/x?bogus=1", 'invalid URI query parameter: "bogus"'),
    ],
)
def test_bad_urls_name_the_setting_and_hide_the_password(raw: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_database_url(raw)
    assert "secret" not in str(raised.value)
    assert raised.value.exit_code == 2
