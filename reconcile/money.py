"""Exact sums of USD amounts held as decimal texts: never a float in a total."""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

ZERO = Decimal(0)
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
    return Decimal(format(amount.normalize(), "f"))


def exact_sum(texts: Iterable[str]) -> Decimal:
    """The exact sum of decimal texts (Postgres' or Python's shortest double forms)."""
    with decimal.localcontext(prec=400):  # wide enough for any double's exact value
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
