import pytest

from reconcile.errors import ConfigError
from reconcile.postgres import conninfo, parse_database_url


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("postgresql://litellm:s3cret@db:5432/litellm", "postgresql://litellm:***@db:5432/litellm"),
        ("postgres://litellm:s3cret@db/litellm", "postgresql://litellm:***@db/litellm"),
        ("postgresql+psycopg2://litellm:s3cret@db/litellm", "postgresql://litellm:***@db/litellm"),
        ("postgresql://litellm@db/litellm?sslmode=require", "postgresql://litellm@db/litellm?sslmode=require"),
        ("postgresql://u:p%40ss@db/x?schema=proxy&connection_limit=5&pool_timeout=10",
         "postgresql://u:***@db/x?connection_limit=5&pool_timeout=10&schema=proxy"),
    ],
)  # fmt: skip
def test_litellm_style_urls_are_accepted_and_shown_without_password(raw: str, shown: str) -> None:
    database = parse_database_url(raw)
    assert str(database) == shown
    assert "s3cret" not in repr(database) and "p%40ss" not in repr(database)
    assert database.url.drivername == "postgresql+psycopg"


def test_prisma_parameters_become_a_search_path_or_go() -> None:
    database = parse_database_url(
        "postgresql://u:p%40ss@db/x?schema=proxy&connection_limit=5&pgbouncer=true"
    )
    assert database.schema == "proxy"
    query = dict(database.url.query)
    assert not {"schema", "connection_limit", "pgbouncer"} & set(query)
    assert query == {"connect_timeout": "10", "application_name": "reconcile"}
    assert conninfo(database).startswith("postgresql://u:p%40ss@db/x?")


def test_given_connection_parameters_are_kept() -> None:
    query = dict(
        parse_database_url("postgresql://db/x?connect_timeout=3&application_name=mine").url.query
    )
    assert query == {"connect_timeout": "3", "application_name": "mine"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "DATABASE_URL is not set"),
        ("  ", "DATABASE_URL is not set"),
        ("just words", "DATABASE_URL is not a valid URL"),
        ("postgresql://u:secret@db:notaport/x", "DATABASE_URL is not a valid URL"),
        ("sqlite:///litellm.db", "DATABASE_URL is a 'sqlite' URL"),
    ],
)
def test_bad_urls_name_the_setting_and_hide_the_password(raw: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_database_url(raw)
    assert "secret" not in str(raised.value)
    assert raised.value.exit_code == 2
