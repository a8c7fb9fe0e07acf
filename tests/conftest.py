"""Fixtures: a real Postgres with LiteLLM's real schema, one fresh database per test."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database, connect
from reconcile.testing.embedded import any_postgres
from reconcile.testing.factory import SpendLog, SpendLogFactory, insert_spend_logs
from reconcile.testing.litellm_schema import create_database, drop_database, ensure_template

SHARED = Path(__file__).resolve().parents[2] / "shared"

# Property tests: about 100 examples each locally, 500 in CI (HYPOTHESIS_PROFILE=ci); no
# deadline, since this machine is shared and timings are noisy.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Database]:
    """A server we may create databases on: TEST_DATABASE_URL, else local, else embedded."""
    with any_postgres() as admin:
        yield admin


@pytest.fixture(scope="session")
def litellm_template(pg_admin: Database) -> str:
    """LiteLLM's schema (every migration of litellm-proxy-extras), built once per server."""
    return ensure_template(pg_admin)


@pytest.fixture
def new_database(pg_admin: Database, litellm_template: str) -> Iterator[Callable[[], Database]]:
    """Make fresh clones of the LiteLLM template; all are dropped after the test."""
    names: list[str] = []

    def make() -> Database:
        name = f"reconcile_test_{uuid.uuid4().hex[:12]}"
        names.append(name)
        return create_database(pg_admin, name, template=litellm_template)

    yield make
    for name in names:
        drop_database(pg_admin, name)


@pytest.fixture
def litellm_db(new_database: Callable[[], Database]) -> Database:
    """A fresh database with LiteLLM's schema and no rows."""
    return new_database()


@pytest.fixture
def insert(litellm_db: Database) -> Callable[..., None]:
    """Write spend-log rows into `litellm_db`."""

    def write(*rows: SpendLog) -> None:
        with connect(litellm_db) as connection:
            insert_spend_logs(connection, rows)
            connection.commit()

    return write


@pytest.fixture
def factory() -> SpendLogFactory:
    """A seeded factory of realistic rows."""
    return SpendLogFactory(seed=7)


DAY = dt.date(2026, 11, 1)
MIDNIGHT = dt.datetime(2026, 11, 1)


def at(seconds: float) -> dt.datetime:
    """A naive UTC time `seconds` after 2026-11-01T00:00:00, at millisecond precision."""
    return MIDNIGHT + dt.timedelta(milliseconds=round(seconds * 1000))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the project (Lago's OpenAPI spec, FACTS.md)."""
    if not SHARED.is_dir():
        if os.environ.get("RECONCILE_REQUIRE_SHARED"):
            pytest.fail(f"{SHARED} is missing: CI must have ../shared beside the project")
        pytest.skip(f"{SHARED} is missing: contract tests need ../shared beside the project")
    return SHARED


#: What configures reconcile from the environment: cleared where a test gives its own.
ENV_NAMES = (
    "DATABASE_URL",
    "LAGO_API_KEY",
    "LAGO_API_BASE",
    "LAGO_API_EVENT_CODE",
    "LAGO_API_CHARGE_BY",
    "RECONCILE_DEBUG",
    "RECONCILE_STATE_DATABASE_URL",
    "RECONCILE_STATE_SCHEMA",
)
LAGO_KEY = "e2e-key"


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No reconcile setting from the machine's environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def lago() -> Iterator[LagoEmulator]:
    """The Lago emulator (Postgres store), demanding LAGO_KEY."""
    with LagoEmulator(api_key=LAGO_KEY) as emulator:
        yield emulator
