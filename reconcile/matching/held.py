"""The forward pass's rows and events, read into arrays once as they are added; Sides per view.

`read_sides` reads a view's frames whole; the forward pass decides hour after hour over views
that overlap (each row is seen in two or three), so it reads what it is given once, as it
comes: texts as codes kept for the whole pass (subscriptions, models: equal codes exactly for
equal texts, as `shared_codes` gives), numbers as arrays. Only what depends on a view as a
whole, the cost clusters, is computed per view (`sides`).
"""

from __future__ import annotations

import dataclasses
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.models import model_key
from reconcile.matching.sides import (
    COST,
    FIELDS,
    Side,
    cost_clusters,
    dictionary,
    numbers,
    text,
)
from reconcile.settings import TOKENS


class Codes:
    """Codes of texts for a whole pass: subscriptions (shared by both sides) and model keys."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, int] = {}
        self.subscription_texts: list[str] = []
        self.models: dict[str, int] = {}
        self.model_keys: dict[tuple[str | None, str | None], int] = {}

    def subscription(self, column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Per position: the code of its text (-1: null), and the matcher's (-1: null or '')."""
        distinct, indices = dictionary(column)
        raw = np.empty(len(distinct) + 1, dtype=np.int64)
        matched = np.empty(len(distinct) + 1, dtype=np.int64)
        for position, value in enumerate(pc.cast(distinct, pa.large_string()).to_pylist()):
            if value is None:
                raw[position] = matched[position] = -1
                continue
            code = self.subscriptions.get(value)
            if code is None:
                code = self.subscriptions[value] = len(self.subscription_texts)
                self.subscription_texts.append(value)
            raw[position], matched[position] = code, -1 if value == "" else code
        raw[-1] = matched[-1] = -1  # index -1: null
        return raw[indices], matched[indices]

    def model(self, models: pd.Series, providers: pd.Series | None) -> np.ndarray:
        """Per position: the code of its model's key (`model_key`, with its provider); -1."""
        distinct, indices = dictionary(models)
        names: list[str | None] = [*pc.cast(distinct, pa.large_string()).to_pylist(), None]
        if providers is None:
            pairs = [(name, None) for name in names]
            per_pair = np.asarray(indices, dtype=np.int64)
        else:
            given, provider = dictionary(providers)
            provider_names: list[str | None] = [
                *pc.cast(given, pa.large_string()).to_pylist(),
                None,
            ]
            # Distinct (model, provider) pairs: -1 (null) is the last entry of either list.
            combined = (indices % len(names)) * len(provider_names) + provider % len(provider_names)
            unique, per_pair = np.unique(combined, return_inverse=True)
            text_of, provider_of = np.divmod(unique, len(provider_names))
            pairs = [
                (names[name], provider_names[given_at])
                for name, given_at in zip(text_of.tolist(), provider_of.tolist(), strict=True)
            ]
        codes = np.array([self._model_code(pair) for pair in pairs] + [-1], dtype=np.int64)
        found: np.ndarray = codes[np.asarray(per_pair, dtype=np.int64).reshape(-1)]
        return found

    def _model_code(self, pair: tuple[str | None, str | None]) -> int:
        code = self.model_keys.get(pair)
        if code is None:
            key = model_key(*pair)
            code = self.models.setdefault(key, len(self.models)) if key else -1
            self.model_keys[pair] = code
        return code


@dataclasses.dataclass
class Held:
    """Rows or events as added (numbered) and what the pass keeps of each, in number order."""

    number: np.ndarray
    time: np.ndarray
    subscription: np.ndarray
    """The matcher's codes (-1: null or '')."""
    subscription_text: np.ndarray
    """Codes of the texts themselves (-1: null; '' has one)."""
    values: np.ndarray
    """(FIELDS, n) int64; the cost's row is set per view (its cluster)."""
    known: np.ndarray
    cost: np.ndarray
    in_window: np.ndarray
    copy: np.ndarray
    transaction_id: pa.Array
    alternate_id: pa.Array
    name: pa.Array
    done: np.ndarray
    status: np.ndarray
    partner: np.ndarray
    matched_by: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.number)

    @classmethod
    def empty(cls) -> Self:
        """Nothing held."""
        return cls(
            **{
                field.name: pa.array([], pa.string())
                if field.name in _TEXTS
                else np.zeros(
                    (len(FIELDS), 0) if field.name in _BY_FIELD else 0,
                    _TYPES.get(field.name, np.int64),
                )
                for field in dataclasses.fields(cls)
            }
        )

    @classmethod
    def read(cls, frame: pd.DataFrame, *, rows: bool, first: int, codes: Codes, time: str) -> Self:
        """A frame as given (rows or events), numbered from `first`."""
        times = numbers(frame[time])
        if not np.isfinite(times).all():
            raise ValueError(f"{time} has missing values: every row and event has a time")
        size = len(frame)
        values = np.zeros((len(FIELDS), size), dtype=np.int64)
        known = np.zeros((len(FIELDS), size), dtype=bool)
        values[0] = codes.model(
            frame["model"],
            frame["custom_llm_provider"] if rows and "custom_llm_provider" in frame else None,
        )
        known[0] = values[0] >= 0
        for field, name in enumerate(TOKENS, start=1):
            count = numbers(frame[name])
            known[field] = np.isfinite(count)
            values[field] = np.where(known[field], np.rint(count), 0)
        cost = numbers(frame["cost"])
        known[COST] = np.isfinite(cost)
        raw, matched = codes.subscription(frame["subscription"])
        transaction_id = _strings(text(frame["transaction_id"]))
        if rows:
            in_window = (
                frame["in_window"].fillna(False).to_numpy(dtype=bool)
                if "in_window" in frame
                else np.ones(size, dtype=bool)
            )
            alternate_id = (
                _strings(text(frame["alternate_id"]))
                if "alternate_id" in frame
                else pa.nulls(size, pa.string())
            )
            name = _strings(text(frame["request_id"]))
        else:
            in_window = np.ones(size, dtype=bool)
            alternate_id = pa.nulls(size, pa.string())
            name = transaction_id
        return cls(
            number=np.arange(first, first + size, dtype=np.int64),
            time=times.astype(np.int64),
            subscription=matched,
            subscription_text=raw,
            values=values,
            known=known,
            cost=cost,
            in_window=in_window,
            copy=np.zeros(size, dtype=bool),
            transaction_id=transaction_id,
            alternate_id=alternate_id,
            name=name,
            done=np.zeros(size, dtype=bool),
            status=np.zeros(size, dtype=np.int8),
            partner=np.full(size, -1, dtype=np.int64),
            matched_by=np.zeros(size, dtype=np.int8),
            reason=np.zeros(size, dtype=np.int8),
        )

    def joined(self, other: Held) -> Held:
        """These, then the other's."""
        if not len(other):
            return self
        if not len(self):
            return other
        return Held(
            **{
                field.name: _join(getattr(self, field.name), getattr(other, field.name))
                for field in dataclasses.fields(self)
            }
        )

    def kept(self, keep: np.ndarray) -> Held:
        """Only the positions `keep` marks."""
        if keep.all():
            return self
        mask = pa.array(keep)
        return Held(
            **{
                field.name: _kept(getattr(self, field.name), keep, mask)
                for field in dataclasses.fields(self)
            }
        )

    def sliced(self, start: int) -> Held:
        """All from position `start` on (views, no copy)."""
        return Held(
            **{
                field.name: _from(getattr(self, field.name), start)
                for field in dataclasses.fields(self)
            }
        )

    def keys(
        self, at: np.ndarray, texts: list[str]
    ) -> tuple[tuple[str | None, str | None, int], ...]:
        """The events' identities at these positions: transaction_id, subscription, time."""
        names = self.transaction_id.take(pa.array(at, pa.int64())).to_pylist()
        owners = [None if code < 0 else texts[code] for code in self.subscription_text[at].tolist()]
        return tuple(zip(names, owners, self.time[at].tolist(), strict=True))


_TEXTS = ("transaction_id", "alternate_id", "name")
_BY_FIELD = ("values", "known")
_TYPES: dict[str, type] = {
    "known": bool,
    "cost": np.float64,
    "in_window": bool,
    "copy": bool,
    "done": bool,
    "status": np.int8,
    "matched_by": np.int8,
    "reason": np.int8,
}


def sides(
    rows: Held, row_at: np.ndarray, events: Held, event_at: np.ndarray, tolerance: float
) -> tuple[Side, Side]:
    """The rows and events at these positions as Sides, as `read_sides` reads their frames."""
    costs = [rows.cost[row_at], events.cost[event_at]]
    clusters, loose = cost_clusters(costs, tolerance)
    found = []
    for index, (held, at) in enumerate(((rows, row_at), (events, event_at))):
        values = held.values[:, at]
        known = held.known[:, at]
        values[COST] = clusters[index]
        picked = pa.array(at, pa.int64())
        transaction_id = held.transaction_id.take(picked)
        found.append(
            Side(
                subscription=held.subscription[at],
                values=values,
                known=known,
                cost=np.where(known[COST], costs[index], np.nan),
                loose=loose[index],
                unbillable=np.isposinf(costs[index]) if index else np.zeros(len(at), bool),
                time=held.time[at],
                transaction_id=transaction_id,
                alternate_id=held.alternate_id.take(picked),
                name=held.name.take(picked) if index == 0 else transaction_id,
            )
        )
    return found[0], found[1]


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Texts as one plain string array (the pass joins and takes them)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values if values.type == pa.string() else pc.cast(values, pa.string())


def _join(first: np.ndarray | pa.Array, second: np.ndarray | pa.Array) -> np.ndarray | pa.Array:
    if isinstance(first, pa.Array):
        return pa.concat_arrays([first, second])
    return np.concatenate([first, second], axis=-1)


def _kept(values: np.ndarray | pa.Array, keep: np.ndarray, mask: pa.Array) -> np.ndarray | pa.Array:
    if isinstance(values, pa.Array):
        return values.filter(mask)
    return values[..., keep]


def _from(values: np.ndarray | pa.Array, start: int) -> np.ndarray | pa.Array:
    return values.slice(start) if isinstance(values, pa.Array) else values[..., start:]
