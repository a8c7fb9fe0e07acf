"""What a run found and did: its plan, the summary the ledger keeps, what `events` wrote."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pandas as pd

from reconcile.attribute import Tally
from reconcile.money import ZERO
from reconcile.report.model import Line
from reconcile.settings import ChargeBy, JobSettings
from reconcile.transaction_id import IdBasis
from reconcile.window import Window


@dataclasses.dataclass(frozen=True)
class Plan:
    """The backfill about to happen: for a confirmation prompt and the dry-run listing."""

    events: list[dict[str, Any]]
    spend: Decimal
    by_customer: pd.DataFrame  # subscription, events, spend


@dataclasses.dataclass
class RunSummary:
    """What a run found and did; `counts()` is what the ledger keeps. Money: exact USD."""

    run_id: int | None
    settings: JobSettings
    tally: Tally
    expected: int = 0
    listed: int = 0
    matched_by_id: int = 0
    matched_by_fingerprint: int = 0
    missing: int = 0
    missing_spend: Decimal = ZERO
    too_recent: int = 0
    """Missing rows held back: their callback events may still arrive (endTime + max delay is
    after now - settle)."""
    too_recent_spend: Decimal = ZERO
    sent: int = 0
    sent_spend: Decimal = ZERO
    already_in_lago: int = 0
    unsent: int = 0
    before_this_month: int = 0
    unexplained: dict[str, tuple[int, Decimal]] = dataclasses.field(default_factory=dict)
    lago_requests: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    plan: Plan | None = None
    lines: list[Line] = dataclasses.field(default_factory=list)
    """Per customer and UTC day, as `reconcile report` shows them, after this run's sending."""
    covered_until: dt.datetime | None = None
    """For a nightly run that left nothing behind: where the next one may start from."""

    @property
    def left_unsent(self) -> int:
        """Missing events unsent for another reason than being too recent (dry run, limit, no)."""
        return self.unsent - self.too_recent

    @property
    def complete(self) -> bool:
        """Whether the run did all it should (else exit 3).

        For `run`, rows held back as too recent are the next night's; a backfill still owes them.
        """
        owed = self.left_unsent if self.settings.mode == "run" else self.unsent
        return owed == 0

    def counts(self) -> dict[str, Any]:
        """The summary as the ledger's `counts` JSON (money as exact decimal strings)."""
        return {
            "rows": {
                member.value: {"rows": part.rows, "spend": str(part.spend)}
                for member, part in self.tally.by_class.items()
            },
            "expected": self.expected,
            "listed": self.listed,
            "matched_by_id": self.matched_by_id,
            "matched_by_fingerprint": self.matched_by_fingerprint,
            "missing": self.missing,
            "missing_spend": str(self.missing_spend),
            "too_recent": self.too_recent,
            "too_recent_spend": str(self.too_recent_spend),
            "sent": self.sent,
            "sent_spend": str(self.sent_spend),
            "already_in_lago": self.already_in_lago,
            "unsent": self.unsent,
            "unexplained": {
                reason: {"events": count, "cost": str(cost)}
                for reason, (count, cost) in self.unexplained.items()
            },
            "lago_requests": self.lago_requests,
            "seconds": self.seconds,
        }


@dataclasses.dataclass(frozen=True)
class EventsSummary:
    """What `events` read and wrote: the classes of the window's rows and the ids it built."""

    source: str
    window: Window
    charge_by: ChargeBy
    code: str
    tally: Tally
    events: int
    id_basis: dict[IdBasis, int]
    seconds: float
