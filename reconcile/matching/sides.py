"""The matcher's two inputs, checked and read once into NumPy arrays: codes, numbers, no strings.

Whatever pandas or Arrow hands over (object, string or Arrow-backed columns, chunked arrays,
categories, columns that are all null, no rows at all) ends up as the same plain arrays, so
the passes that follow never meet a dtype they did not expect.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.models import model_keys
from reconcile.matching.types import MatchSettings
from reconcile.settings import TOKENS

#: What a fingerprint compares besides subscription and time; a null is unknown, never a mismatch.
FIELDS = ("model", *TOKENS, "cost")
COST = FIELDS.index("cost")
ROW_COLUMNS = ("transaction_id", "request_id", "subscription", "model", *TOKENS, "cost", "end_ms")
EVENT_COLUMNS = ("transaction_id", "subscription", "model", *TOKENS, "cost", "timestamp_ms")


@dataclasses.dataclass(frozen=True)
class Side:
    """Rows or events as arrays, position for position with the frame they came from."""

    subscription: np.ndarray
    """int64 codes shared by both sides; -1 where there is none."""
    values: np.ndarray
    """(FIELDS, n) int64: the model's code, the token counts, the cost's cluster."""
    known: np.ndarray
    """(FIELDS, n) bool: False where the value is missing or null."""
    cost: np.ndarray
    """float64 USD, NaN where unknown."""
    loose: np.ndarray
    """bool: the cost's cluster holds costs that are not all alike (see `cost_clusters`)."""
    unbillable: np.ndarray
    """bool: an event whose cost Lago cannot sum (+inf, see lago.events.UNBILLABLE): it bills
    nothing, so it is nobody's."""
    time: np.ndarray
    """int64 Unix ms: "endTime" for rows, the event's timestamp for events."""
    transaction_id: pa.Array | pa.ChunkedArray
    alternate_id: pa.Array | pa.ChunkedArray
    """Rows: the other identity's id of a row sharing a call id and millisecond (else null)."""
    name: pa.Array | pa.ChunkedArray
    """What breaks ties in time: request_id for rows, transaction_id for events."""

    def __len__(self) -> int:
        return len(self.time)

    @property
    def shape(self) -> np.ndarray:
        """Which FIELDS each one knows, as bits (bit i: FIELDS[i])."""
        bits = np.zeros(len(self), dtype=np.int64)
        for index in range(len(FIELDS)):
            bits |= self.known[index].astype(np.int64) << index
        return bits


def read_sides(
    rows: pd.DataFrame, events: pd.DataFrame, settings: MatchSettings
) -> tuple[Side, Side, np.ndarray]:
    """Both inputs as Sides, and the rows' `in_window` flags; ValueError on a malformed input."""
    require(rows, ROW_COLUMNS, "rows")
    require(events, EVENT_COLUMNS, "events")
    row_ids = text(rows["transaction_id"])
    subscriptions = shared_codes(rows["subscription"], events["subscription"])
    models = shared_codes(
        rows["model"],
        events["model"],
        rewrite=model_keys,
        providers=rows.get("custom_llm_provider"),
    )
    costs = [numbers(rows["cost"]), numbers(events["cost"])]
    clusters, loose = cost_clusters(costs, settings.cost_tolerance)
    sides = []
    for index, (frame, time) in enumerate(((rows, "end_ms"), (events, "timestamp_ms"))):
        # Filled field by field: a million-row side never holds its columns twice.
        values = np.empty((len(FIELDS), len(frame)), dtype=np.int64)
        known = np.empty((len(FIELDS), len(frame)), dtype=bool)
        values[0], known[0] = models[index], models[index] >= 0
        for field, name in enumerate(TOKENS, start=1):
            count = numbers(frame[name])
            known[field] = np.isfinite(count)
            values[field] = np.where(known[field], np.rint(count), 0)
        values[COST], known[COST] = clusters[index], np.isfinite(costs[index])
        times = numbers(frame[time])
        if not np.isfinite(times).all():
            raise ValueError(f"{time} has missing values: every row and event has a time")
        sides.append(
            Side(
                subscription=subscriptions[index],
                values=values,
                known=known,
                cost=np.where(known[COST], costs[index], np.nan),
                loose=loose[index],
                unbillable=np.isposinf(costs[index]) if index else np.zeros(len(frame), bool),
                time=times.astype(np.int64),
                transaction_id=row_ids if index == 0 else text(frame["transaction_id"]),
                alternate_id=text(frame["alternate_id"])
                if index == 0 and "alternate_id" in frame
                else pa.nulls(len(frame), pa.string()),
                name=text(frame["request_id"]) if index == 0 else text(frame["transaction_id"]),
            )
        )
    in_window = (
        rows["in_window"].fillna(False).to_numpy(dtype=bool)
        if "in_window" in rows
        else np.ones(len(rows), dtype=bool)
    )
    return sides[0], sides[1], in_window


def require(frame: pd.DataFrame, columns: tuple[str, ...], side: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{side} lack column(s) {', '.join(missing)}: need {', '.join(columns)}")
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        raise ValueError(f"{side} need a default RangeIndex (reset_index(drop=True))")


def text(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column of texts, whatever its dtype, as Arrow strings (nulls and chunks kept)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    array = pa.array(column, from_pandas=True)
    if isinstance(array, pa.ChunkedArray) and not array.num_chunks:
        array = pa.array([], array.type)
    if pa.types.is_dictionary(array.type):
        array = pc.cast(array, array.type.value_type)
    if array.null_count == len(array):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return pc.cast(array, pa.string())


def whole(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array of a chunked one (a copy: for the small ones only)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values


def positions(values: pa.Array | pa.ChunkedArray, lookup: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """For each value, the position of its first occurrence in `lookup`, or -1.

    The lookup is hashed and the values probed: give the smaller side as `lookup`.
    """
    found = pc.index_in(values, value_set=pc.cast(whole(lookup), values.type))
    return np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)


def flags(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as NumPy, null as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def numbers(column: pd.Series) -> np.ndarray:
    """A numeric column (ints, floats, numeric texts; nulls) as float64, NaN where not a number."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    converted = pd.to_numeric(column, errors="coerce")
    return np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def shared_codes(
    left: pd.Series,
    right: pd.Series,
    *,
    rewrite: Callable[[pa.Array, pa.Array | None], pa.Array] | None = None,
    providers: pd.Series | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """int64 codes of two text columns, equal for equal texts; -1 for null or ''.

    `rewrite(texts, providers)` maps both sides' texts before they are compared: the left
    side's with its rows' `providers` (if given), the right side's with None. It only ever
    sees distinct values (distinct pairs of a text and its provider, on the left).
    """
    parts = []
    for side, column in enumerate((left, right)):
        distinct, indices = _dictionary(column)
        if rewrite is not None and side == 0 and providers is not None:
            given, provider = _dictionary(providers)
            pairs, indices = np.unique(
                indices * (len(given) + 1) + provider + 1, return_inverse=True
            )
            text_of, provider_of = np.divmod(pairs, len(given) + 1)
            distinct = rewrite(_take(distinct, text_of), _take(given, provider_of - 1))
        elif rewrite is not None:
            distinct = rewrite(distinct, None)
        parts.append((pc.cast(distinct, pa.large_string()), np.asarray(indices, dtype=np.int64)))
    both = pa.concat_arrays([part[0] for part in parts])  # the distinct values only: small
    both = pc.if_else(pc.equal(both, ""), pa.scalar(None, pa.large_string()), both)
    codes = _indices(pc.dictionary_encode(both))
    left_map, right_map = codes[: len(parts[0][0])], codes[len(parts[0][0]) :]
    return _through(left_map, parts[0][1]), _through(right_map, parts[1][1])


def _take(values: pa.Array, positions: np.ndarray) -> pa.Array:
    """values[positions], null where a position is -1."""
    return pc.take(values, pa.array(positions, pa.int64(), mask=positions < 0))


def _dictionary(column: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """A text column as its distinct values and each position's index into them (-1: null)."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # already so: no string is touched
        categories = column.cat.categories
        distinct = text(pd.Series(categories, dtype=object)) if len(categories) else None
        codes = column.cat.codes.to_numpy(dtype=np.int64)
        return (distinct if distinct is not None else pa.array([], pa.large_string())), codes
    encoded = pc.dictionary_encode(whole(text(column)))  # one dictionary for all chunks
    return encoded.dictionary, _indices(encoded)


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    return np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), np.int64)


def _through(mapping: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """mapping[indices], with -1 (null) staying -1."""
    through: np.ndarray = np.append(mapping, -1).astype(np.int64)[indices]
    return through


def cost_clusters(
    costs: list[np.ndarray], tolerance: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Costs of both sides grouped into clusters of alike values, and which clusters are loose.

    Two costs are alike when they differ by at most `tolerance` of the larger one. Sorted, the
    distinct costs split wherever two neighbours are not alike: no cost is alike to one in
    another cluster. A cluster whose extremes differ by at most half the tolerance is tight:
    all its costs are alike, so "same cluster" is exactly "alike". Others (chains of near
    values) are loose, and matched pair by pair. Unknown costs get cluster 0, never read.
    """
    every = np.concatenate(costs)
    finite = np.isfinite(every)
    # Hashing first (a few distinct costs repeat a million times), then sorting the distinct.
    codes, uniques = pd.factorize(every[finite])
    order = np.argsort(uniques, kind="stable")
    distinct = np.asarray(uniques)[order]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    inverse = inverse[codes]
    ids = np.zeros(len(every), dtype=np.int64)
    flagged = np.zeros(len(every), dtype=bool)
    if len(distinct):
        larger = np.maximum(np.abs(distinct[1:]), np.abs(distinct[:-1]))
        apart = np.abs(np.diff(distinct)) > tolerance * larger
        cluster = np.concatenate([[0], np.cumsum(apart)])
        firsts = np.flatnonzero(np.r_[True, apart])
        lasts = np.r_[firsts[1:] - 1, len(distinct) - 1]
        low, high = distinct[firsts], distinct[lasts]
        tight = np.abs(high - low) <= tolerance / 2 * np.maximum(np.abs(low), np.abs(high))
        ids[finite] = cluster[inverse]
        flagged[finite] = ~tight[ids[finite]]
    bounds = np.cumsum([0, *(len(side) for side in costs)])
    clusters = [ids[start:stop] for start, stop in itertools.pairwise(bounds)]
    loose = [flagged[start:stop] for start, stop in itertools.pairwise(bounds)]
    return clusters, loose
