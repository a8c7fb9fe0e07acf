"""Exact sums of costs: Arrow where it is exact, Python where it is not, never a wrong digit."""

import decimal
from decimal import Decimal

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from reconcile.build_events import plain_decimal
from reconcile.money import exact, total

doubles = st.floats(allow_nan=False, allow_infinity=False)


@given(values=st.lists(doubles, max_size=20))
def test_sums_are_exact_whatever_the_magnitudes(values: list[float]) -> None:
    """Arrow's decimal cast wraps some values (a 309-digit integer reads as 0): never trusted."""
    texts = plain_decimal(pa.array([repr(value) for value in values], pa.string()))
    decimals = exact(texts)
    if decimals is not None:
        assert [Decimal(str(value)) for value in decimals.to_pylist()] == [
            Decimal(text) for text in texts.to_pylist()
        ]
    with decimal.localcontext(prec=2000):
        wanted = sum((Decimal(repr(value)) for value in values), Decimal(0))
    assert total(texts) == wanted
