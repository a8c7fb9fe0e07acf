"""Exact sums per customer and period: in Arrow's C++, or in Python past its precision."""

from __future__ import annotations

import collections
from collections.abc import Callable
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from reconcile.money import ZERO, exact, exact_sum, tidy

Key = tuple[str, str]  # (customer, period)
Periods = Callable[[pa.Array], pa.Array]
"""Unix milliseconds -> the period label each falls in ("2026-11-01" or "2026-11")."""


def periods(timezone: str, by: str) -> Periods:
    """Label each Unix millisecond with its day or month in `timezone`."""
    pattern = "%Y-%m-%d" if by == "day" else "%Y-%m"

    def label(milliseconds: pa.Array) -> pa.Array:
        # Every zone's offset is whole minutes: format each distinct minute once, not each row.
        minutes = pc.divide(pc.cast(milliseconds, pa.int64()), 60_000)
        distinct = pc.unique(minutes)
        stamps = pc.cast(pc.multiply(distinct, 60_000), pa.timestamp("ms", "UTC"))
        texts = pc.strftime(pc.cast(stamps, pa.timestamp("ms", timezone)), format=pattern)
        return texts.take(pc.index_in(minutes, value_set=distinct))

    return label


def group_sums(
    customers: pa.Array, labels: pa.Array, texts: pa.Array | None
) -> list[tuple[Key, int, Decimal]]:
    """(key, rows, exact sum of texts) per (customer, period), summed by Arrow in C++.

    `texts` are decimal texts or already EXACT decimals.
    """
    columns: dict[str, pa.Array] = {"customer": customers, "period": labels}
    aggregations: list[tuple[str, str]] = [("customer", "count")]
    if texts is not None:
        amounts = exact(texts)
        if amounts is None:  # a cost too small for 40 decimals: exact in Python instead
            return _python_sums(customers, labels, texts)
        columns["cost"] = amounts
        aggregations.append(("cost", "sum"))
    grouped = pa.table(columns).group_by(["customer", "period"]).aggregate(aggregations)
    sums = grouped.column("cost_sum").to_pylist() if texts is not None else None
    return [
        ((customer, period), rows, tidy(sums[index]) if sums is not None else ZERO)
        for index, (customer, period, rows) in enumerate(
            zip(
                grouped.column("customer").to_pylist(),
                grouped.column("period").to_pylist(),
                grouped.column("customer_count").to_pylist(),
                strict=True,
            )
        )
    ]


def _python_sums(
    customers: pa.Array, labels: pa.Array, texts: pa.Array
) -> list[tuple[Key, int, Decimal]]:
    groups: dict[Key, list[str]] = collections.defaultdict(list)
    for customer, period, text in zip(
        customers.to_pylist(), labels.to_pylist(), texts.to_pylist(), strict=True
    ):
        groups[(customer, period)].append(text)
    return [(key, len(values), exact_sum(values)) for key, values in groups.items()]
