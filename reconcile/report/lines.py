"""Report lines from their sums: Lago's side, the delta and the status; their order and total."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from reconcile.money import wide
from reconcile.report.sums import Key
from reconcile.results import Line, Status


def finish(key: Key, values: Mapping[str, Any], runs: tuple[int, ...], tolerance: Decimal) -> Line:
    """A line from its sums: what Lago holds, the delta and the status."""
    with wide():
        return _finish(key, values, runs, tolerance)


def _finish(key: Key, values: Mapping[str, Any], runs: tuple[int, ...], tolerance: Decimal) -> Line:
    line = Line(customer=key[0], period=key[1], backfill_runs=runs, **values)
    lago_cost = line.matched_cost + line.unexplained_cost
    delta = line.spend - lago_cost
    percent = (delta / line.spend * 100).quantize(Decimal("0.0001")) if line.spend else None
    # Any missing or unexplained event is an exception whatever its amount: the tolerance only
    # absorbs the rounding of amounts.
    if line.missing_events or delta > tolerance:
        status = Status.UNDER_BILLED
    elif line.unexplained_events or delta < -tolerance:
        status = Status.OVER_BILLED
    else:
        status = Status.OK
    return dataclasses.replace(
        line, lago_cost=lago_cost, delta=delta, delta_percent=percent, status=status
    )


def sorted_lines(lines: Iterable[Line]) -> list[Line]:
    """Under-billed first, then over-billed, then ok; within each, the largest impact first."""
    rank = {Status.UNDER_BILLED: 0, Status.OVER_BILLED: 1, Status.OK: 2}
    return sorted(
        lines,
        key=lambda line: (
            rank[line.status],
            -abs(line.delta) - line.missing_spend,
            line.customer,
            line.period,
        ),
    )


def totals(lines: Sequence[Line], tolerance: Decimal) -> Line:
    """The sum of every line, as one line."""
    sums: collections.Counter[str] = collections.Counter()
    runs: set[int] = set()
    with wide():
        for line in lines:
            runs.update(line.backfill_runs)
            for field in dataclasses.fields(Line):
                value = getattr(line, field.name)
                if field.name not in _NOT_SUMMED and isinstance(value, int | Decimal):
                    sums[field.name] += value  # type: ignore[assignment]
    return finish(("TOTAL", ""), sums, tuple(sorted(runs)), tolerance)


_NOT_SUMMED = {"lago_cost", "delta", "delta_percent"}
