"""Classify each spend-log row: billable to a charge-by id, or why not, and tally each class."""

from __future__ import annotations

import dataclasses
import enum
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.money import ZERO, total, wide


class RowClass(enum.StrEnum):
    """What a spend-log row means for billing; every row gets exactly one."""

    BILLABLE = "billable"
    """Succeeded (or has no status, as LiteLLM wrote before May 2025, whatever the row's date),
    has a charge-by id and a finite cost of zero or more: one Lago event."""
    UNATTRIBUTABLE = "unattributable"
    """Succeeded but has no charge-by id ('' or NULL): LiteLLM's callback cannot bill it either."""
    FAILED = "failed"
    """Status other than success: LiteLLM never bills it, even when it carries a partial cost."""
    INVALID_COST = "invalid_cost"
    """Billable but for its cost, which is NaN, infinite or NULL: no event can carry it."""
    NEGATIVE_COST = "negative_cost"
    """Billable but for its cost, which is below zero (a pricing bug upstream): sent, it would be
    a credit nobody asked for, so it never is."""


CLASS_ORDER = tuple(RowClass)


def classify(rows: pa.Table) -> pa.Table:
    """`rows` plus `cost` (float64) and `row_class` columns.

    Failure outranks a missing id, which outranks an invalid or negative cost.
    """
    cost = pc.cast(rows.column("spend"), pa.float64())
    succeeded = rows.column("succeeded").to_numpy(zero_copy_only=False)
    has_id = pc.is_valid(rows.column("charge_by_id")).to_numpy(zero_copy_only=False)
    # A NULL spend (only in a table altered by hand) is no cost at all: no event can carry it.
    finite = pc.fill_null(pc.is_finite(cost), False).to_numpy(zero_copy_only=False)
    negative = pc.fill_null(pc.less(cost, 0.0), False).to_numpy(zero_copy_only=False)
    codes = np.select(
        [~succeeded, ~has_id, ~finite, negative],
        [
            CLASS_ORDER.index(RowClass.FAILED),
            CLASS_ORDER.index(RowClass.UNATTRIBUTABLE),
            CLASS_ORDER.index(RowClass.INVALID_COST),
            CLASS_ORDER.index(RowClass.NEGATIVE_COST),
        ],
        default=CLASS_ORDER.index(RowClass.BILLABLE),
    ).astype(np.int8)
    row_class = pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int8()), pa.array([member.value for member in CLASS_ORDER])
    )
    return rows.append_column("cost", cost).append_column("row_class", row_class)


def billable(classified: pa.Table) -> pa.Table:
    """Only the rows that call for a Lago event."""
    codes = classified.column("row_class").combine_chunks().indices
    return classified.filter(pc.equal(codes, CLASS_ORDER.index(RowClass.BILLABLE)))


@dataclasses.dataclass(frozen=True)
class ClassTotal:
    """How many rows of one class and their exact summed cost (USD; NaN, infinities left out)."""

    rows: int = 0
    spend: Decimal = ZERO
    rows_with_spend: int = 0

    def __add__(self, other: ClassTotal) -> ClassTotal:
        with wide():
            return ClassTotal(
                self.rows + other.rows,
                self.spend + other.spend,
                self.rows_with_spend + other.rows_with_spend,
            )


@dataclasses.dataclass(frozen=True)
class Tally:
    """Rows and spend of each class over everything classified so far."""

    by_class: dict[RowClass, ClassTotal] = dataclasses.field(
        default_factory=lambda: {member: ClassTotal() for member in CLASS_ORDER}
    )

    @property
    def rows(self) -> int:
        """All rows read, whatever their class."""
        return sum(part.rows for part in self.by_class.values())

    @property
    def spend(self) -> Decimal:
        """All finite spend read, whatever its class."""
        with wide():
            return sum((part.spend for part in self.by_class.values()), ZERO)

    def __getitem__(self, row_class: RowClass) -> ClassTotal:
        return self.by_class[row_class]

    def __add__(self, other: Tally) -> Tally:
        return Tally({member: self[member] + other[member] for member in CLASS_ORDER})


def tally(classified: pa.Table) -> Tally:
    """Count and sum one classified chunk: the exact sum of the spend texts LiteLLM stored."""
    codes = classified.column("row_class").combine_chunks().indices.to_numpy()
    cost = classified.column("cost").to_numpy()
    finite = np.isfinite(cost)
    spend = classified.column("spend")
    totals = {}
    for index, member in enumerate(CLASS_ORDER):
        chosen = codes == index
        counted = chosen & finite & (cost != 0)
        totals[member] = ClassTotal(
            rows=int(np.count_nonzero(chosen)),
            spend=total(spend.filter(pa.array(counted))) if counted.any() else ZERO,
            rows_with_spend=int(np.count_nonzero(counted)),
        )
    return Tally(totals)
