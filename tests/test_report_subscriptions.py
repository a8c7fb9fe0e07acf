"""The report checks every customer of the window for a Lago subscription, not only the under-billed."""

import random
from collections.abc import Callable

from conftest import DAY
from test_reconcile_e2e import CODE, KEY, billable, callback
from test_report import DAY_WINDOW

from reconcile import commands
from reconcile.lago.client import LagoClient
from reconcile.lago_emulator import LagoEmulator
from reconcile.postgres import Database
from reconcile.report.build import ReportSettings
from reconcile.settings import ChargeBy
from reconcile.testing.factory import SpendLogFactory


def test_every_customer_without_a_subscription_is_named_missing_events_or_not(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows = list(factory.day(DAY, 300))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    customers = sorted({str(row.end_user) for row in billable(rows)})
    by_customer = {
        name: [row for row in billable(rows) if row.end_user == name] for name in customers
    }
    complete, incomplete, subscribed = customers[0], customers[1], customers[2:]
    delivered = [row for name in customers if name != incomplete for row in by_customer[name]]
    delivered += by_customer[incomplete][1:]  # one of its events was lost
    with LagoEmulator(api_key=KEY) as lago:
        callback(lago, delivered)
        for name in subscribed:
            lago.add_subscription(name, f"acct-{random.Random(name).random()}")
        with LagoClient(lago.url, KEY) as client:
            result = commands.report(
                litellm_db, commands.LagoSettings(lago.url, KEY), commands.StateSettings(litellm_db),
                ReportSettings(window=DAY_WINDOW, charge_by=ChargeBy.END_USER_ID, code=CODE),
                client=client,
            )  # fmt: skip
    (note,) = [note for note in result.notes if "no subscription" in note]
    assert "for 2 customer(s)" in note
    assert repr(complete) in note and repr(incomplete) in note  # with and without missing events
    assert not any(repr(name) in note for name in subscribed)


def test_no_note_when_every_customer_has_a_subscription(
    litellm_db: Database, insert: Callable[..., None], factory: SpendLogFactory
) -> None:
    rows = list(factory.day(DAY, 100))
    insert(*rows)
    commands.migrate(commands.StateSettings(litellm_db))
    with LagoEmulator(api_key=KEY) as lago:
        for name in {str(row.end_user) for row in billable(rows)}:
            lago.add_subscription(name, f"acct-{name}")
        result = commands.report(
            litellm_db, commands.LagoSettings(lago.url, KEY), commands.StateSettings(litellm_db),
            ReportSettings(window=DAY_WINDOW, charge_by=ChargeBy.END_USER_ID, code=CODE),
        )  # fmt: skip
    assert not any("no subscription" in note for note in result.notes)
