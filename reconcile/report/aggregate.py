"""Sum a window's rows, matches and Lago events into report lines, per customer and period."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.attribute import CLASS_ORDER, RowClass
from reconcile.expected import Expected
from reconcile.matching import ROW_STATUSES, EventStatus, MatchResult, Reason, RowStatus
from reconcile.money import exact, wide
from reconcile.report.lines import finish
from reconcile.report.sums import Key, Periods, group_sums
from reconcile.results import UNATTRIBUTED, Line

REASON_FIELDS: dict[str, str] = {  # reason -> the Line fields' prefix
    Reason.DUPLICATE.value: "duplicate",
    Reason.PROPERTY_MISMATCH.value: "property_mismatch",
    Reason.NO_SUCH_REQUEST.value: "no_such_request",
}


@dataclasses.dataclass
class Tallies:
    """Counts, exact sums and run ids per (customer, period), merged window after window."""

    values: dict[Key, collections.Counter[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    runs: dict[Key, set[int]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(set)
    )

    def add(self, key: Key, field: str, amount: int | Decimal) -> None:
        """Add to one field of one line."""
        with wide():
            self.values[key][field] += amount  # type: ignore[assignment]

    def grouped(
        self,
        customers: pa.Array,
        labels: pa.Array,
        *,
        count: str,
        total: str | None = None,
        texts: pa.Array | None = None,
    ) -> None:
        """Count rows (and sum their decimal `texts`) into `count` (and `total`) per key."""
        if not len(customers):
            return
        for key, rows, amount in group_sums(customers, labels, texts if total else None):
            self.add(key, count, rows)
            if total is not None:
                self.add(key, total, amount)

    def chosen(
        self,
        customers: pa.Array,
        labels: pa.Array,
        mask: np.ndarray,
        *,
        count: str,
        total: str | None = None,
        texts: pa.Array | None = None,
    ) -> None:
        """`grouped` over the positions `mask` picks."""
        if not mask.any():
            return
        keep = pa.array(mask, pa.bool_())
        self.grouped(
            customers.filter(keep),
            labels.filter(keep),
            count=count,
            total=total,
            texts=texts.filter(keep) if texts is not None else None,
        )

    def merge(self, other: Tallies) -> None:
        """Add another window's sums to these."""
        for key, values in other.values.items():
            self.values[key].update(values)
        for key, runs in other.runs.items():
            self.runs[key] |= runs

    def to_json(self) -> list[list[Any]]:
        """As JSON: [customer, period, {field: amount}, [run ids]] per line; money as text."""
        return [
            [
                customer,
                period,
                {
                    field: str(amount) if isinstance(amount, Decimal) else amount
                    for field, amount in values.items()
                },
                sorted(self.runs.get((customer, period), ())),
            ]
            for (customer, period), values in self.values.items()
        ]

    @classmethod
    def from_json(cls, entries: Iterable[Sequence[Any]]) -> Tallies:
        """Tallies from `to_json`'s output."""
        tallies = cls()
        for customer, period, values, runs in entries:
            key = (customer, period)
            for field, amount in values.items():
                tallies.add(key, field, Decimal(amount) if isinstance(amount, str) else amount)
            if runs:
                tallies.runs[key] |= set(runs)
        return tallies

    def lines(self, tolerance: Decimal) -> list[Line]:
        """One finished line per key: Lago's side, delta and status computed."""
        return [
            finish(key, self.values[key], tuple(sorted(self.runs.get(key, ()))), tolerance)
            for key in self.values
        ]


def observe_rows(tallies: Tallies, label: Periods) -> Callable[[pa.Table], None]:
    """For read_expected: every row of the window, billable or not, into LiteLLM's side."""

    def observe(rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        ids = pc.fill_null(rows.column("charge_by_id"), UNATTRIBUTED).combine_chunks()
        period = label(rows.column("start_ms").combine_chunks())
        classes = rows.column("row_class").combine_chunks().indices.to_numpy(zero_copy_only=False)
        spend = rows.column("spend").combine_chunks()
        cost = rows.column("cost").combine_chunks()
        finite = pc.is_finite(cost).to_numpy(zero_copy_only=False)
        per_key = pa.table(
            {
                "customer": ids,
                "period": period,
                **{name: rows.column(name) for name in ("prompt_tokens", "completion_tokens")},
            }
        ).group_by(["customer", "period"])
        summed = per_key.aggregate(
            [("customer", "count"), ("prompt_tokens", "sum"), ("completion_tokens", "sum")]
        )
        for entry in summed.to_pylist():
            key = (entry["customer"], entry["period"])
            tallies.add(key, "requests", entry["customer_count"])
            tallies.add(key, "prompt_tokens", entry["prompt_tokens_sum"] or 0)
            tallies.add(key, "completion_tokens", entry["completion_tokens_sum"] or 0)
        failed = (classes == CLASS_ORDER.index(RowClass.FAILED)) & finite
        failed &= pc.not_equal(cost, 0.0).to_numpy(zero_copy_only=False)
        unattributable = (classes == CLASS_ORDER.index(RowClass.UNATTRIBUTABLE)) & finite
        negative = classes == CLASS_ORDER.index(RowClass.NEGATIVE_COST)
        for mask, count, total in (
            (failed, "failed_requests_with_spend", "failed_spend"),
            (unattributable, "unattributable_requests", "unattributable_spend"),
            (negative, "negative_cost_requests", "negative_cost_spend"),
        ):
            tallies.chosen(ids, period, mask, count=count, total=total, texts=spend)

    return observe


def add_matches(
    tallies: Tallies,
    expected: Expected,
    result: MatchResult,
    label: Periods,
    *,
    backfilled: Mapping[str, int],
    finalized: Callable[[str, int], bool],
) -> None:
    """The window's billable rows and Lago's events: matched, missing, backfilled, unexplained.

    `backfilled` maps the transaction ids the ledger holds to their run; `finalized(customer,
    end_ms)` says whether an event at that time falls in an already finalized invoice.
    """
    positions = np.flatnonzero(expected.in_window)
    needed = [
        "external_subscription_id",
        "start_ms",
        "end_ms",
        "response_cost",
        "cost",
        "transaction_id",
    ]
    table = expected.events.select(needed)
    status = result.rows["status"].cat.codes.to_numpy()
    partner = result.rows["event"].to_numpy()
    event_costs = result.events["cost"].to_numpy(dtype=np.float64)
    ledger_ids = pa.array(sorted(backfilled), pa.string())
    for start in range(0, len(positions), SLICE_ROWS):  # slices: a few MB at a time
        own = positions[start : start + SLICE_ROWS]
        _add_slice(
            tallies,
            table.take(pa.array(own, pa.int64())),
            status[own],
            partner[own],
            event_costs,
            label,
            (ledger_ids, backfilled),
            finalized,
        )
    _add_unexplained(tallies, result, label)


SLICE_ROWS = 1 << 17


def _add_slice(
    tallies: Tallies,
    events: pa.Table,
    status: np.ndarray,
    partner: np.ndarray,
    event_costs: np.ndarray,
    label: Periods,
    ledger: tuple[pa.Array, Mapping[str, int]],
    finalized: Callable[[str, int], bool],
) -> None:
    ledger_ids, backfilled = ledger
    customers = events.column("external_subscription_id").combine_chunks()
    labels = label(events.column("start_ms").combine_chunks())
    texts = events.column("response_cost").combine_chunks()
    costs = exact(texts) or texts  # decimals once, summed below many times
    ids = events.column("transaction_id").combine_chunks()
    tallies.grouped(customers, labels, count="billable_requests", total="spend", texts=costs)
    billed = status == ROW_STATUSES.index(RowStatus.BILLED)
    tallies.chosen(
        customers,
        labels,
        billed,
        count="matched_events",
        total="matched_cost",
        texts=_held(costs, events.column("cost").to_numpy(), partner, event_costs),
    )
    in_ledger = pc.is_in(ids, value_set=ledger_ids).to_numpy(zero_copy_only=False)
    tallies.chosen(
        customers,
        labels,
        in_ledger,
        count="backfilled_events",
        total="backfilled_spend",
        texts=costs,
    )
    chosen = pa.array(np.flatnonzero(in_ledger), pa.int64())
    for customer, period, name in zip(
        customers.take(chosen).to_pylist(),
        labels.take(chosen).to_pylist(),
        ids.take(chosen).to_pylist(),
        strict=True,
    ):
        tallies.runs[(customer, period)].add(backfilled[name])
    missing = status == ROW_STATUSES.index(RowStatus.MISSING)
    tallies.chosen(
        customers, labels, missing, count="missing_events", total="missing_spend", texts=costs
    )
    # Missing rows whose event would land in an already invoiced period: never billed.
    end_ms = events.column("end_ms").combine_chunks()
    lost = np.zeros(len(missing), dtype=bool)
    at = np.flatnonzero(missing)
    chosen = pa.array(at, pa.int64())
    lost[at] = [
        finalized(customer, end)
        for customer, end in zip(
            customers.take(chosen).to_pylist(), end_ms.take(chosen).to_pylist(), strict=True
        )
    ]
    tallies.chosen(
        customers,
        labels,
        lost,
        count="not_recoverable_events",
        total="not_recoverable_spend",
        texts=costs,
    )


def add_sent(tallies: Tallies, sent: pa.Table, run_id: int, label: Periods) -> None:
    """Rows a run just sent (customer, start_ms, response_cost): from missing to in Lago."""
    customers = sent.column("external_subscription_id").to_pylist()
    labels = label(sent.column("start_ms").combine_chunks()).to_pylist()
    for customer, period, text in zip(
        customers, labels, sent.column("response_cost").to_pylist(), strict=True
    ):
        key, cost = (customer, period), Decimal(text)
        for field, sign in (("missing", -1), ("matched", 1), ("backfilled", 1)):
            tallies.add(key, f"{field}_events", sign)
            tallies.add(
                key, f"{field}_spend" if field != "matched" else "matched_cost", sign * cost
            )
        tallies.runs[key].add(run_id)


def _held(
    costs: pa.Array, row_costs: np.ndarray, partner: np.ndarray, event_costs: np.ndarray
) -> pa.Array:
    """What Lago holds for each row: its event's cost where there is one and it differs."""
    padded = np.append(event_costs, np.nan)  # partner -1 (no event) reads the NaN
    held = padded[np.where(partner >= 0, partner, len(event_costs))]
    # Most events carry the row's very double: only the others are converted.
    other = np.isfinite(held) & (held != row_costs)
    if not other.any():
        return costs
    replacements = pc.cast(pa.array(held[other]), pa.string())
    if pa.types.is_decimal(costs.type):
        decimals = exact(replacements)
        if decimals is None:  # too small or too large for EXACT: all as texts, summed in Python
            costs = pc.cast(costs, pa.string())
        else:
            replacements = decimals
    return pc.replace_with_mask(costs, pa.array(other), replacements)


def _add_unexplained(tallies: Tallies, result: MatchResult, label: Periods) -> None:
    events = result.events
    chosen = events[events["status"] == EventStatus.UNEXPLAINED]
    if not len(chosen):
        return
    customers = pa.array(chosen["subscription"].astype(object).fillna(UNATTRIBUTED), pa.string())
    labels = label(pa.array(chosen["timestamp_ms"].to_numpy(dtype=np.int64)))
    cost = pa.array(chosen["cost"].to_numpy(dtype=np.float64))
    texts = pc.if_else(pc.is_finite(cost), pc.cast(pc.fill_null(cost, 0.0), pa.string()), "0")
    reasons = chosen["reason"].astype(str).to_numpy()
    tallies.grouped(
        customers, labels, count="unexplained_events", total="unexplained_cost", texts=texts
    )
    for reason, field in REASON_FIELDS.items():
        tallies.chosen(
            customers,
            labels,
            reasons == reason,
            count=f"{field}_events",
            total=f"{field}_cost",
            texts=texts,
        )
