"""Exact sums of USD amounts held as decimal texts: never a float in a total."""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Iterable
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

ZERO = Decimal(0)
WIDE = decimal.Context(
    prec=1000,  # the exact sum of any doubles: 1.8e308 plus 5e-324 needs 632 digits
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
"""Decimal arithmetic that never rounds a sum of costs (the default context keeps 28 digits)."""
EXACT = pa.decimal256(76, 40)
"""Shortest double texts of costs down to 1e-23 fit exactly; sums up to 1e36 USD."""


def exact(amounts: pa.Array) -> pa.Array | None:
    """Decimal texts as EXACT decimals (already decimal: as they are); None if one won't fit."""
    if pa.types.is_decimal(amounts.type):
        return amounts
    try:
        return pc.cast(amounts, EXACT)
    except pa.ArrowInvalid:
        return None


def tidy(amount: Decimal) -> Decimal:
    """Without trailing zeros or an exponent: 0.0000150000 -> 0.000015, 1E+1 -> 10."""
    with wide():
        return Decimal(format(amount.normalize(), "f"))


def wide() -> contextlib.AbstractContextManager[decimal.Context]:
    """Exact decimal arithmetic (WIDE) for the block: every sum, difference and ratio of money."""
    return decimal.localcontext(WIDE)


def exact_sum(texts: Iterable[str]) -> Decimal:
    """The exact sum of decimal texts (Postgres' or Python's shortest double forms)."""
    with wide():
        return tidy(sum(map(Decimal, texts), ZERO))


def total(amounts: pa.Array | pa.ChunkedArray) -> Decimal:
    """The exact sum of decimal texts or decimals (nulls left out), by Arrow where it fits."""
    if isinstance(amounts, pa.ChunkedArray):
        amounts = amounts.combine_chunks() if amounts.num_chunks else pa.array([], pa.string())
    decimals = exact(amounts)
    if decimals is None:
        return exact_sum(value for value in amounts.to_pylist() if value is not None)
    summed = pc.sum(decimals).as_py()
    return tidy(summed) if summed is not None else ZERO
