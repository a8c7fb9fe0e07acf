"""Integer keys that never overflow: packing where it fits, the slow exact way where it does not."""

import numpy as np
import pytest

from reconcile.matching.keys import combine, expand, order_by, time_ranges

BIG = np.int64(1) << 40


@pytest.mark.parametrize("scale", [1, BIG], ids=["packed", "beyond int64 when packed"])
def test_order_by_sorts_by_key_then_time_whatever_the_magnitudes(scale: np.int64) -> None:
    rng = np.random.default_rng(5)
    key = rng.integers(0, 1 << 22, 2000).astype(np.int64) * scale
    time = rng.integers(0, 1 << 40, 2000).astype(np.int64)
    order = order_by(key, time)
    assert (order == np.lexsort((time, key))).all()


@pytest.mark.parametrize("scale", [1, BIG], ids=["packed", "per key"])
def test_time_ranges_find_every_match_whatever_the_magnitudes(scale: np.int64) -> None:
    rng = np.random.default_rng(6)
    key = rng.integers(0, 50, 500).astype(np.int64) * scale
    time = rng.integers(0, 10_000, 500).astype(np.int64) * (1 << 20)
    query = rng.integers(0, 50, 80).astype(np.int64) * scale
    low = rng.integers(0, 10_000, 80).astype(np.int64) * (1 << 20)
    high = low + rng.integers(0, 2_000, 80).astype(np.int64) * (1 << 20)
    order, start, stop = time_ranges(key, time, query, low, high)
    asked, position = expand(start, stop)
    found = {(int(q), int(order[p])) for q, p in zip(asked, position, strict=True)}
    wanted = {
        (q, row)
        for q in range(80)
        for row in range(500)
        if key[row] == query[q] and low[q] <= time[row] <= high[q]
    }
    assert found == wanted


def test_combined_keys_are_equal_exactly_where_every_column_is() -> None:
    rng = np.random.default_rng(7)
    columns = [rng.integers(0, 3, 1000).astype(np.int64) * (1 << 50) for _ in range(6)]
    key = combine(columns, 1000)
    tuples = list(zip(*(column.tolist() for column in columns), strict=True))
    for i in range(0, 1000, 37):
        for j in range(0, 1000, 41):
            assert (key[i] == key[j]) == (tuples[i] == tuples[j])
