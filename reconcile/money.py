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


#: Magnitudes EXACT holds for any double's shortest text: at most 36 integer digits, and at
#: most 40 decimals for 17 significant digits.
_EXACT_RANGE = (1e-23, 1e35)


def exact(amounts: pa.Array) -> pa.Array | None:
    """Decimal texts as EXACT decimals (already decimal: as they are); None if one won't fit.

    Arrow's cast to a decimal raises on most values that do not fit, but wraps some (a
    309-digit integer, or 1e-230 written out, reads as 0): magnitudes are checked first.
    """
    if pa.types.is_decimal(amounts.type):
        return amounts
    if len(amounts) - amounts.null_count:
        magnitudes = pc.abs(pc.cast(amounts, pa.float64()))
        largest = pc.max(magnitudes).as_py()
        smallest = pc.min(pc.filter(magnitudes, pc.greater(magnitudes, 0))).as_py()
        low, high = _EXACT_RANGE
        if largest is None or not largest < high or (smallest is not None and smallest < low):
            return None
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
