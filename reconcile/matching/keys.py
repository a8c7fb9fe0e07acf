"""Integer keys for columns of codes, time orders and time ranges that never overflow int64."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

_LIMIT = 1 << 62


def dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes in [0, count) equal exactly where `values` (int64) are equal, and the count."""
    if not len(values):
        return values.astype(np.int64), 0
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 31:  # token counts and codes: the value less the minimum is a code
        return (values - low).astype(np.int64), high - low + 1
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64), len(uniques)


def combine(columns: Sequence[np.ndarray], length: int) -> np.ndarray:
    """One dense int64 key per position, equal exactly where every column is equal.

    Mixed radix, column by column; the keys are renumbered whenever the next column could
    overflow them, so any number of columns of any range is safe.
    """
    combined = np.zeros(length, dtype=np.int64)
    bound = 1  # every key < bound (a Python int: the check itself cannot overflow)
    for column in columns:
        codes, count = dense(column)
        if bound * count >= _LIMIT:
            combined, uniques = pd.factorize(combined)
            bound = len(uniques)
        combined = combined * count + codes
        bound *= max(count, 1)
    if length and bound > length:
        combined = pd.factorize(combined)[0].astype(np.int64)
    return combined


def order_by(key: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The positions sorted by key, then time (stable): one argsort when it fits int64."""
    if not len(key):
        return np.zeros(0, dtype=np.int64)
    span = int(time.max()) - int(time.min()) + 1
    if (int(key.max()) + 1) * span < _LIMIT and int(key.min()) >= 0:
        combined = key.astype(np.int64) * span + (time - time.min())
        return np.argsort(combined, kind="stable")
    return np.lexsort((time, key))


def time_ranges(
    key: np.ndarray, time: np.ndarray, query_key: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query, the positions with its key and a time in [low, high].

    Returns the order that sorts (key, time), and for each query the slice [start, stop) of
    that order holding its matches.
    """
    order = order_by(key, time)
    if not len(order) or not len(query_key):
        empty = np.zeros(len(query_key), dtype=np.int64)
        return order, empty, empty
    sorted_key, sorted_time = key[order], time[order]
    base = min(int(sorted_time.min()), int(low.min())) - 1
    span = max(int(sorted_time.max()), int(high.max())) - base + 2
    keys = int(max(int(key.max()), int(query_key.max()))) + 2
    if keys * span < _LIMIT and int(min(key.min(), query_key.min())) >= -1:
        # Keys from -1 up, times from base: one int64 that sorts like (key, time).
        packed = (sorted_key + 1) * span + (sorted_time - base)
        start = np.searchsorted(packed, (query_key + 1) * span + (low - base), side="left")
        stop = np.searchsorted(packed, (query_key + 1) * span + (high - base), side="right")
        return order, start.astype(np.int64), stop.astype(np.int64)
    # Enormous spans or keys: per key (rare; correct whatever the values).
    start = np.zeros(len(query_key), dtype=np.int64)
    stop = np.zeros(len(query_key), dtype=np.int64)
    first = np.searchsorted(sorted_key, query_key, side="left")
    last = np.searchsorted(sorted_key, query_key, side="right")
    for position in range(len(query_key)):
        segment = sorted_time[first[position] : last[position]]
        start[position] = first[position] + np.searchsorted(segment, low[position], side="left")
        stop[position] = first[position] + np.searchsorted(segment, high[position], side="right")
    return order, start, stop


def expand(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, position) with start[query] <= position < stop[query]."""
    sizes = np.maximum(stop - start, 0)
    query = np.repeat(np.arange(len(start), dtype=np.int64), sizes)
    offsets = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(sizes) - sizes, sizes
    )
    return query, np.repeat(start, sizes) + offsets
