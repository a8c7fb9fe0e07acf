"""Real LiteLLM, across providers: the row its proxy writes and the event its Lago callback sends.

For each request of the matrix (`litellm_traffic.MATRIX`, through a proxy without a router and
one with a `model_list` router), LiteLLM's own code builds the spend-log row
(`get_logging_payload`, stored as the proxy's DB writer stores it) and its own `LagoLogger`
posts the event to the Lago emulator, Lago's clock at the row's endTime plus 250 ms. Checks:

- `test_row_and_event_differ_only_as_documented`: the two descriptions of one request, field
  by field, against `DIFFERENCES`, what LiteLLM 1.110.2 makes differ;
- `test_backfill_sends_nothing_for_requests_the_callback_delivered`: the callback delivered
  every request, so a backfill of the window bills every row by the callback's events, finds
  nothing missing, sends nothing and calls no event unexplained (per charge-by mode);
- `test_backfill_sends_every_request_the_callback_lost`: the control; with no callback event,
  the same rows are all backfilled, and a second run sends nothing.

Needs the `interop` extra (litellm) and what LiteLLM's proxy imports (fastapi, backoff, redis,
...): without them the module is skipped. No network: chat, streaming, cache hits and
`/responses` use LiteLLM's `mock_response`, embeddings a local OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litellm_traffic import END_USER, MATRIX, TEAM, USER, Call, Entry, Traffic
from psycopg import sql

from reconcile import commands
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.matching.models import PROVIDERS
from reconcile.postgres import Database, connect
from reconcile.results import RunSummary
from reconcile.settings import TOKENS, ChargeBy, JobSettings
from reconcile.testing.litellm_schema import create_database, drop_database
from reconcile.window import UTC, Window

KEY = "interop-key"
CODE = "litellm_interop"
IDS = {"end_user_id": END_USER, "user_id": USER, "team_id": TEAM}

CASES = [
    pytest.param(entry, route, id=f"{entry.name}-{route}")
    for entry in MATRIX
    for route in entry.routes
]

#: What differs between LiteLLM's row and its callback's event for the same request, as
#: LiteLLM 1.110.2 does it; every other case agrees on model, cost, tokens and subscription.
#: - "model": the event's `model` is `kwargs["model"]`, the provider route stripped by
#:   `get_llm_provider`; the row's is `reconstruct_model_name(...)`: behind a router (wildcards
#:   too) the deployment's configured model verbatim (`<provider>/...`), else Bedrock's
#:   `bedrock/` put back when the stripped name has no `/`. Removing `<custom_llm_provider>/`
#:   from the front of both makes them equal (`/responses` keeps the route in both).
#: - "cost": the event's `response_cost` is null where the row's `spend` is 0.0: a model the
#:   cost map does not price, called without a router (behind one, LiteLLM says 0.0 on both).
#: - "no tokens": the event has no token keys (`/responses`: its response is no ModelResponse).
DIFFERENCES: dict[tuple[str, str], set[str]] = {
    ("bedrock-region-prefix", "direct"): {"model"},
    ("bedrock-region-prefix", "router"): {"model"},
    ("bedrock", "direct"): {"model"},
    ("bedrock", "router"): {"model"},
    ("bedrock-converse-route", "router"): {"model"},
    ("vertex_ai", "router"): {"model"},
    ("azure-base-model", "router"): {"model"},
    ("azure-known-model", "router"): {"model"},
    ("anthropic", "router"): {"model"},
    ("anthropic-wildcard", "router"): {"model"},
    ("openrouter-nested", "direct"): {"cost"},
    ("openrouter-nested", "router"): {"model"},
    ("together_ai", "router"): {"model"},
    ("gemini", "router"): {"model"},
    ("groq-nested", "router"): {"model"},
    ("unknown-model", "direct"): {"cost"},
    ("unknown-model", "router"): {"model"},
    ("streaming", "router"): {"model"},
    ("cache-hit", "router"): {"model"},
    ("responses-api", "direct"): {"no tokens"},
    ("responses-api", "router"): {"no tokens"},
}


@pytest.fixture(scope="session")
def traffic() -> dict[tuple[str, str], Traffic]:
    """Every entry over both routes, through real LiteLLM, once per session (its import is slow)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # read once, at import
        try:
            import litellm.proxy.proxy_server  # noqa: F401
        except ImportError as missing:
            if os.environ.get("RECONCILE_REQUIRE_INTEROP"):  # CI: never a silent skip
                pytest.fail(f"the interop extra is not installed: {missing}")
            pytest.skip(f"needs the interop extra (LiteLLM and its proxy): {missing}")
    from litellm_traffic import drive, openai_server

    with openai_server() as local_openai:
        return drive(MATRIX, local_openai)


@pytest.fixture(scope="module")
def interop_database(pg_admin: Database, litellm_template: str) -> Iterator[Database]:
    """One clone of LiteLLM's schema for the module (a clone costs more than a whole test)."""
    name = f"reconcile_interop_{uuid.uuid4().hex[:12]}"
    yield create_database(pg_admin, name, template=litellm_template)
    drop_database(pg_admin, name)


@pytest.fixture
def spend_logs(interop_database: Database) -> Database:
    """The module's database with no spend logs and a new, empty ledger."""
    state = commands.StateSettings(interop_database)
    with connect(interop_database) as connection:
        connection.execute('TRUNCATE "LiteLLM_SpendLogs"')
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(state.schema))
        )
        connection.commit()
    commands.migrate(state)
    return interop_database


@pytest.fixture
def lago_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets what LiteLLM's LagoLogger reads; returns a setter for the base URL and charge-by."""

    def configure(base: str, charge_by: str) -> None:
        for name, value in {"LAGO_API_BASE": base, "LAGO_API_KEY": KEY,
                            "LAGO_API_EVENT_CODE": CODE, "LAGO_API_CHARGE_BY": charge_by}.items():  # fmt: skip
            monkeypatch.setenv(name, value)

    return configure


def _strip(model: str, provider: str) -> str:
    return model.removeprefix(f"{provider}/") if provider else model


def differences(row: dict[str, Any], properties: dict[str, Any]) -> set[str]:
    """What differs between a row and its event's properties (see DIFFERENCES)."""
    found = set()
    if properties["model"] != row["model"]:
        found.add("model")
    if properties["response_cost"] != row["spend"]:
        found.add("cost")
    if not set(TOKENS) & set(properties):
        found.add("no tokens")
    elif any(properties[name] != row[name] for name in TOKENS):
        found.add("tokens")
    return found


def test_every_provider_litellm_knows_is_a_route_reconcile_strips(
    traffic: dict[tuple[str, str], Traffic],
) -> None:
    import litellm  # imported by the `traffic` fixture, which skips without it

    known = {str(getattr(provider, "value", provider)) for provider in litellm.provider_list}
    assert known <= PROVIDERS


@pytest.mark.parametrize(("entry", "route"), CASES)
def test_row_and_event_differ_only_as_documented(
    traffic: dict[tuple[str, str], Traffic], lago_env: Any, entry: Entry, route: str
) -> None:
    lago_env("http://127.0.0.1:9", "end_user_id")  # nothing is sent: the body is built only
    calls = traffic[entry.name, route].calls
    assert len(calls) == (2 if entry.cache_hit else 1)
    from litellm_traffic import lago_event

    for call in calls:
        row = call.row
        assert row is not None, "the proxy wrote no row for a successful request"
        event = lago_event(call)
        properties = event["properties"]
        assert differences(row, properties) == DIFFERENCES.get((entry.name, route), set())
        provider = row["custom_llm_provider"]
        assert _strip(properties["model"], provider) == _strip(row["model"], provider)
        if properties["response_cost"] is None:
            assert row["spend"] == 0.0
        assert set(properties) <= {"model", "response_cost", *TOKENS}
        # Who pays: the same ids on both sides, for every charge-by mode.
        assert event["external_subscription_id"] == row["end_user"] == END_USER
        assert (row["user"], row["team_id"]) == (USER, TEAM)
        metadata = call.kwargs["litellm_params"]["metadata"]
        assert (metadata["user_api_key_user_id"], metadata["user_api_key_team_id"]) == (USER, TEAM)
        # Times: the callback's naive local times, in UTC (rounded to the ms by Postgres).
        assert row["startTime"] == call.start_time.astimezone(UTC).isoformat()
        assert row["endTime"] == call.end_time.astimezone(UTC).isoformat()
        # The call id the proxy gave the request is the row's; the event carries none.
        assert row["litellm_call_id"] == call.kwargs["litellm_call_id"]
        assert row["status"] == "success"


def _window(calls: list[Call]) -> Window:
    starts = [call.payload["startTime"] for call in calls]
    since = min(starts).replace(second=0, microsecond=0)
    return Window(since, max(starts).replace(second=0, microsecond=0) + dt.timedelta(minutes=1))


def _described(traffic: Traffic, lago: LagoEmulator) -> str:
    keys = ("request_id", "model", "custom_llm_provider", "spend", *TOKENS, "end_user", "team_id",
            "endTime", "cache_hit")  # fmt: skip
    rows = [{key: row[key] for key in keys} for row in traffic.rows]
    events = [
        {key: event[key] for key in ("external_subscription_id", "timestamp", "properties")}
        for event in lago.stored_events()
    ]
    return f"\nrows: {rows}\nevents in Lago after the run: {events}"


def _ms_half_up(when: dt.datetime) -> dt.datetime:
    """What a timestamp(3) column keeps of an aware time: naive UTC, rounded half up to the ms."""
    microseconds = (when - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=(microseconds + 500) // 1000)


def _store(database: Database, traffic: Traffic, charge_by: str) -> None:
    """The proxy's rows into the database, checked as Postgres keeps them."""
    from litellm_traffic import insert_rows

    with connect(database) as connection:
        insert_rows(connection, traffic.rows)
        connection.commit()
        stored = connection.execute(
            'SELECT request_id, "startTime", "endTime", %s = ANY(ARRAY["end_user", "user", team_id]) '
            'FROM "LiteLLM_SpendLogs" ORDER BY "startTime"',
            (IDS[charge_by],),
        ).fetchall()
    assert stored == [
        (call.payload["request_id"], _ms_half_up(call.payload["startTime"]),
         _ms_half_up(call.payload["endTime"]), True)
        for call in traffic.calls
    ]  # fmt: skip


def _backfill(
    database: Database, lago: LagoEmulator, traffic: Traffic, charge_by: str
) -> RunSummary:
    settings = JobSettings(
        mode="backfill", window=_window(traffic.calls), charge_by=ChargeBy(charge_by), code=CODE
    )
    # Run as the night after: every row settled, every event in.
    with LagoClient(lago.url, KEY) as client:
        return commands.backfill(
            database, commands.LagoSettings(lago.url, KEY), commands.StateSettings(database),
            settings, client=client, now=settings.window.until + dt.timedelta(days=1),
        )  # fmt: skip


def _outcome(summary: RunSummary) -> dict[str, Any]:
    return {
        "billable rows": summary.expected,
        "billed by the callback": summary.matched_by_fingerprint,
        "missing": summary.missing,
        "held back": summary.too_recent,
        "sent": summary.sent,
        "unexplained": {reason: count for reason, (count, _) in summary.unexplained.items()},
    }


@pytest.mark.parametrize("charge_by", ["end_user_id", "team_id", "user_id"])
@pytest.mark.parametrize(("entry", "route"), CASES)
def test_backfill_sends_nothing_for_requests_the_callback_delivered(
    traffic: dict[tuple[str, str], Traffic],
    spend_logs: Database,
    lago_env: Any,
    entry: Entry,
    route: str,
    charge_by: str,
) -> None:
    from litellm_traffic import send_callback_events

    delivered = traffic[entry.name, route]
    _store(spend_logs, delivered, charge_by)
    with LagoEmulator(api_key=KEY) as lago:
        lago_env(lago.url, charge_by)
        asyncio.run(send_callback_events(delivered.calls, lago.set_clock))
        lago.set_clock(dt.datetime.now(UTC))
        assert [event["external_subscription_id"] for event in lago.stored_events()] == [
            IDS[charge_by]
        ] * len(delivered.calls), "LiteLLM's callback did not deliver every request"
        summary = _backfill(spend_logs, lago, delivered, charge_by)
        requests = len(delivered.calls)
        assert _outcome(summary) == {
            "billable rows": requests, "billed by the callback": requests, "missing": 0,
            "held back": 0, "sent": 0, "unexplained": {},
        }, _described(delivered, lago)  # fmt: skip


@pytest.mark.parametrize(("entry", "route"), CASES)
def test_backfill_sends_every_request_the_callback_lost(
    traffic: dict[tuple[str, str], Traffic], spend_logs: Database, entry: Entry, route: str
) -> None:
    """The control: with Lago down for the callback, the same rows are all backfilled, once."""
    lost = traffic[entry.name, route]
    _store(spend_logs, lost, "end_user_id")
    with LagoEmulator(api_key=KEY) as lago:
        first = _outcome(_backfill(spend_logs, lago, lost, "end_user_id"))
        second = _outcome(_backfill(spend_logs, lago, lost, "end_user_id"))
        requests = len(lost.calls)
        assert (first["missing"], first["sent"], first["unexplained"]) == (requests, requests, {})
        assert (second["missing"], second["sent"], second["unexplained"]) == (0, 0, {})
        assert sorted(
            event["properties"]["litellm_request_id"] for event in lago.stored_events()
        ) == sorted(row["request_id"] for row in lost.rows)
