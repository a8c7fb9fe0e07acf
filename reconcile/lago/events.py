"""Events as Lago lists them, read into the columns the matcher compares."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from reconcile.errors import LagoError
from reconcile.settings import TOKENS
from reconcile.window import to_ms


def parse_time(text: str) -> dt.datetime:
    """Lago's "2026-11-01T00:00:00.123Z" (or without milliseconds) as an aware datetime."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed.astimezone(dt.UTC)


T = TypeVar("T")
#: Turns one page (Lago's JSON bytes) into (its events in some form, how many, its meta).
PageParser = Callable[[bytes], tuple[T, int, Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Slice(Generic[T]):
    """One slice of a window, [start, end] both included, and its parsed pages."""

    start: dt.datetime
    end: dt.datetime
    pages: list[T]


def json_page(content: bytes) -> tuple[list[dict[str, Any]], int, Mapping[str, Any]]:
    """A page as Lago's event objects."""
    try:
        body = json.loads(content)
    except ValueError:
        raise LagoError(f"Lago answered a page that is not JSON: {content[:200]!r}") from None
    events = body.get("events", []) if isinstance(body, dict) else []
    return events, len(events), body.get("meta", {}) if isinstance(body, dict) else {}


#: Other names of the same counts (LiteLLM's docs, and reconcile's own events, carry both).
TOKEN_ALIASES = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}
NUMERIC_PROPERTIES = (*TOKENS, *TOKEN_ALIASES.values(), "response_cost")
#: One page's events, as columns: what `frame` reads.
PAGE_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("external_subscription_id", pa.string()),
        ("timestamp", pa.string()),
        ("model", pa.string()),
        *((name, pa.int64()) for name in (*TOKENS, *TOKEN_ALIASES.values())),
        ("response_cost", pa.float64()),
    ]
)
#: A number sent as a string ("0.00027": reconcile's own costs; every property on Lago's
#: ClickHouse store), quotes and all. Costs are looked for on their own (the common case: one
#: short pattern scans a page fast), token counts only on pages that hold one.
_NUMBER = rb'"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"'
_QUOTED_COST = re.compile(rb'("response_cost"\s*:\s*)' + _NUMBER)
_NUMERIC = re.compile(_NUMBER.decode()[1:-1])
#: The cost of an event whose `response_cost` no Lago store sums (a text that is no number, an
#: object, a boolean): such an event bills nothing, so it bills no request. (A number written
#: with an exponent stays a number: Lago's ClickHouse store lists every JSON number as text,
#: `"1.5e-05"` included, so a listing cannot tell it from a string a client sent.)
UNBILLABLE = float("inf")
_QUOTED_TOKENS = re.compile(
    rb'("(?:'
    + b"|".join(name.encode() for name in NUMERIC_PROPERTIES[:-1])
    + rb')"\s*:\s*)'
    + _NUMBER
)


def unquote_numbers(content: bytes) -> bytes:
    """A page with its numeric properties sent as strings written as JSON numbers."""
    content = _QUOTED_COST.sub(rb"\1\2", content)
    if b'_tokens":"' in content or b'_tokens": "' in content:
        content = _QUOTED_TOKENS.sub(rb"\1\2", content)
    return content


_WIRE = pa.schema(
    [
        (
            "events",
            pa.list_(
                pa.struct(
                    [
                        *(PAGE_SCHEMA.field(name) for name in PAGE_SCHEMA.names[:3]),
                        ("properties", pa.struct(list(PAGE_SCHEMA)[3:])),
                    ]
                )
            ),
        ),
        ("meta", pa.struct([("next_page", pa.int64()), ("total_count", pa.int64())])),
    ]
)
_PARSE = pajson.ParseOptions(explicit_schema=_WIRE, unexpected_field_behavior="ignore")


def arrow_page(content: bytes) -> tuple[pa.Table, int, Mapping[str, Any]]:
    """A page as PAGE_SCHEMA columns, parsed in C++ (json.loads is 3 times slower).

    Numeric properties sent as strings (reconcile's own costs; every property on the
    ClickHouse store) are read as the numbers they spell. Pages that still do not fit the
    schema take the slower path through Python objects, with the same result.
    """
    try:
        table = pajson.read_json(
            pa.BufferReader(unquote_numbers(content)),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(content) + 1),
            parse_options=_PARSE,
        )
    except pa.ArrowInvalid:
        objects, count, meta = json_page(content)
        return _table(objects), count, meta
    events = pc.list_flatten(table.column("events")).combine_chunks() if table.num_rows else None
    meta = table.column("meta")[0].as_py() or {}
    if events is None or len(events) == 0:
        return PAGE_SCHEMA.empty_table(), 0, meta
    properties = events.field("properties")
    columns = [events.field(name) for name in PAGE_SCHEMA.names[:3]]
    columns += [properties.field(name) for name in PAGE_SCHEMA.names[3:]]
    return pa.Table.from_arrays(columns, schema=PAGE_SCHEMA), len(events), meta


def _table(objects: list[dict[str, Any]]) -> pa.Table:
    """Python event objects as PAGE_SCHEMA columns.

    Token counts that are no whole numbers within int64 become null; a cost Lago cannot sum
    becomes UNBILLABLE.
    """
    arrays = []
    for field in PAGE_SCHEMA:
        top_level = PAGE_SCHEMA.names.index(field.name) < 3
        values = [
            item.get(field.name) if top_level else (item.get("properties") or {}).get(field.name)
            for item in objects
        ]
        if pa.types.is_string(field.type):  # texts as texts, absent and null as null
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        elif field.name == "response_cost":
            arrays.append(pa.array([_cost(value) for value in values], pa.float64()))
        else:
            arrays.append(pa.array([_count(value) for value in values], pa.int64()))
    return pa.Table.from_arrays(arrays, schema=PAGE_SCHEMA)


def _cost(value: object) -> float | None:
    """A cost as Lago's sums read it: a number, or a text that is one; None when absent."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        return float(value)
    return UNBILLABLE


def _count(value: object) -> int | None:
    """A token count: a whole number within int64 (given as a number or a text), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return round(number) if math.isfinite(number) and abs(number) < 2**63 else None


def frame(slices: Iterable[Slice[pa.Table]]) -> pd.DataFrame:
    """The listed events as the matcher reads them, each event once (slices share edges).

    Each slice is made compact as soon as it arrives (times as integers, subscriptions and
    models dictionary-encoded) so a day of a million events stays small.
    """
    compact: list[pa.Table] = []
    edges: set[int] = set()
    for part in slices:
        if part.pages:
            compact.append(_compact(pa.concat_tables(part.pages)))
        edges.add(to_ms(part.end))
    table = pa.concat_tables(compact) if compact else _compact(PAGE_SCHEMA.empty_table())
    events: pd.DataFrame = table.to_pandas(
        types_mapper=lambda kind: pd.ArrowDtype(kind) if kind == pa.string() else None
    )
    for name in TOKENS:
        events[name] = events[name].astype("Int64")
    on_edge = events["timestamp_ms"].isin(edges)
    twice = events[on_edge].duplicated(["transaction_id", "subscription", "timestamp_ms"])
    if not twice.any():
        return events
    return events.drop(index=twice[twice].index).reset_index(drop=True)


def _compact(page: pa.Table) -> pa.Table:
    stamps = pc.cast(page.column("timestamp"), pa.timestamp("ms", "UTC"))
    return pa.table(
        {
            "transaction_id": page.column("transaction_id"),
            "subscription": pc.dictionary_encode(page.column("external_subscription_id")),
            "model": pc.dictionary_encode(page.column("model")),
            "timestamp_ms": pc.cast(stamps, pa.int64()),
            "cost": page.column("response_cost"),
            **{name: _tokens(page, name) for name in TOKENS},
        }
    )


def _tokens(page: pa.Table, name: str) -> pa.ChunkedArray:
    """A token count under its callback name, else under its other name (input/output)."""
    alias = TOKEN_ALIASES.get(name)
    return pc.coalesce(page.column(name), page.column(alias)) if alias else page.column(name)
