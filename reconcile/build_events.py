"""Turn billable spend-log rows into the Lago events that bill them, as JSON lines or CSV.

One event per billable row:

    {"transaction_id": "rc1-…",                  see reconcile.transaction_id
     "external_subscription_id": <charge-by id>,
     "code": <event code>,
     "timestamp": "1793491201.586",              "endTime" in Unix seconds, exact to the ms
     "properties": {"model", "response_cost", "prompt_tokens", "completion_tokens",
                    "total_tokens", "input_tokens", "output_tokens", "litellm_request_id"}}

`response_cost` is a plain decimal string ("0.000015", never "1.5e-05": Lago's sums skip
exponents) holding every digit of the double LiteLLM stored. The token counts appear under
the names LiteLLM's callback sends (prompt/completion/total) and the names its docs show
(input/output). The timestamp is a decimal string, as in Lago's own API examples, so a
resend carries exactly the same value (Lago's ClickHouse store dedupes on it).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import BinaryIO, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from reconcile.transaction_id import identities

EVENT_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("external_subscription_id", pa.string()),
        ("code", pa.string()),
        ("timestamp", pa.string()),
        ("model", pa.string()),
        ("response_cost", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("litellm_request_id", pa.string()),
        # Bookkeeping, not sent: how the id was made, and what matching needs.
        ("id_basis", pa.int8()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("cost", pa.float64()),
        ("custom_llm_provider", pa.string()),
        ("alternate_id", pa.string()),  # see transaction_id.identities
    ]
)

CSV_COLUMNS = (
    "transaction_id",
    "external_subscription_id",
    "code",
    "timestamp",
    "model",
    "response_cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "litellm_request_id",
)


def build_events(billable_rows: pa.Table, code: str) -> pa.Table:
    """The events (EVENT_SCHEMA) for billable rows, in `"startTime"`, then request id order."""
    rows = billable_rows.take(
        pc.sort_indices(
            billable_rows, sort_keys=[("start_ms", "ascending"), ("request_id", "ascending")]
        )
    )
    ids, basis, alternates = identities(rows, code)
    return pa.table(
        [
            ids,
            rows.column("charge_by_id"),
            pa.array([code] * rows.num_rows, pa.string()),
            unix_seconds_text(rows.column("end_ms").combine_chunks()),
            rows.column("model"),
            plain_decimal(rows.column("spend").combine_chunks()),
            rows.column("prompt_tokens"),
            rows.column("completion_tokens"),
            rows.column("total_tokens"),
            rows.column("request_id"),
            pa.array(basis, pa.int8()),
            rows.column("start_ms"),
            rows.column("end_ms"),
            rows.column("cost")
            if "cost" in rows.column_names
            else pc.cast(rows.column("spend"), pa.float64()),
            rows.column("custom_llm_provider")
            if "custom_llm_provider" in rows.column_names
            else pa.nulls(rows.num_rows, pa.string()),
            alternates,
        ],
        schema=EVENT_SCHEMA,
    )


def unix_seconds_text(milliseconds: pa.Int64Array) -> pa.StringArray:
    """Unix milliseconds as exact decimal seconds: 1793491201586 -> "1793491201.586"."""
    values = milliseconds.to_numpy()
    seconds, millis = np.divmod(np.abs(values), 1000)
    text = pc.binary_join_element_wise(
        pc.cast(pa.array(seconds), pa.string()),
        pc.utf8_lpad(pc.cast(pa.array(millis), pa.string()), 3, "0"),
        ".",
    )
    if values.size and values.min() < 0:  # before 1970: only in damaged data, but exact anyway
        text = pc.binary_join_element_wise(pa.array(np.where(values < 0, "-", "")), text, "")
    return text


def plain_decimal(texts: pa.StringArray) -> pa.StringArray:
    """Postgres' shortest double texts ("1.5e-05") as plain decimals ("0.000015"), exactly."""
    scientific = pc.match_substring(texts, "e")
    if not pc.any(scientific).as_py():
        return texts
    originals = texts.filter(scientific)
    mantissa, exponent_text = (
        pc.list_element(pc.split_pattern(originals, "e"), index) for index in (0, 1)
    )
    negative = pc.starts_with(exponent_text, "-").to_numpy(zero_copy_only=False)
    exponent = np.abs(pc.cast(pc.replace_substring(exponent_text, "+", ""), pa.int64()).to_numpy())
    # -d.ddde-k == -0.(k-1 zeros)dddd
    plain = pc.binary_join_element_wise(
        pc.if_else(pc.starts_with(mantissa, "-"), "-", ""),
        "0.",
        pc.binary_repeat("0", pa.array(np.maximum(exponent - 1, 0))),
        pc.replace_substring(pc.replace_substring(mantissa, "-", ""), ".", ""),
        "",
    )
    if not negative.all():
        # A positive exponent means a cost of 1e15 USD or more: rare enough for the slow path.
        large = np.flatnonzero(~negative)
        exact = [format(Decimal(text), "f") for text in originals.take(large).to_pylist()]
        plain = pc.replace_with_mask(plain, pa.array(~negative), pa.array(exact, pa.string()))
    return pc.replace_with_mask(texts, scientific, plain)


_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


def _may_need_escape(data: pa.Buffer) -> bool:
    """Whether the bytes hold a control character, a quote or a backslash."""
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool((raw < 0x20).any() or (raw == ord('"')).any() or (raw == ord("\\")).any())


def json_escaped(values: pa.StringArray) -> pa.StringArray:
    """Each value as the inside of a JSON string literal (no quotes; UTF-8 kept as is)."""
    _, _, data = values.buffers()
    # One scan of the whole buffer: ids almost never hold quotes, backslashes or controls.
    if data is None or not _may_need_escape(data):
        return values
    needs_escape = pc.match_substring_regex(values, _NEEDS_ESCAPE)
    escaped = [
        json.dumps(value, ensure_ascii=False)[1:-1]
        for value in values.filter(needs_escape).to_pylist()
    ]
    return pc.replace_with_mask(values, needs_escape, pa.array(escaped, pa.string()))


def json_lines(events: pa.Table) -> pa.StringArray:
    """One compact JSON object per event, each ending in a newline; a null value as `null`."""
    if events.num_rows == 0:
        return pa.array([], pa.string())
    column = {name: events.column(name).combine_chunks() for name in events.column_names}
    prompt = _json_number(column["prompt_tokens"])
    completion = _json_number(column["completion_tokens"])
    code = json.dumps(column["code"][0].as_py(), ensure_ascii=False)
    return _joined(
        '{"transaction_id":',
        _json_string(column["transaction_id"], escape=False),
        ',"external_subscription_id":',
        _json_string(column["external_subscription_id"]),
        f',"code":{code},"timestamp":',
        _json_string(column["timestamp"], escape=False),
        ',"properties":{"model":',
        _json_string(column["model"]),
        ',"response_cost":',
        _json_string(column["response_cost"], escape=False),
        ',"prompt_tokens":',
        prompt,
        ',"completion_tokens":',
        completion,
        ',"total_tokens":',
        _json_number(column["total_tokens"]),
        ',"input_tokens":',
        prompt,
        ',"output_tokens":',
        completion,
        ',"litellm_request_id":',
        _json_string(column["litellm_request_id"]),
        "}}\n",
    )


_Piece: TypeAlias = str | pa.Array


def _json_string(values: pa.StringArray, *, escape: bool = True) -> list[_Piece]:
    """The pieces of a JSON string literal per value, `null` for a null.

    `escape=False` for values built here from digits and hex, which never need it.
    """
    inside = json_escaped(values) if escape else values
    if not values.null_count:
        return ['"', inside, '"']  # the usual case: the quotes join the literal pieces around
    # One null would make the whole concatenated line null.
    return [pc.fill_null(pc.binary_join_element_wise('"', inside, '"', ""), "null")]


def _json_number(values: pa.Int64Array) -> list[_Piece]:
    """The JSON number per value, `null` for a null."""
    text = pc.cast(values, pa.string())
    return [pc.fill_null(text, "null") if values.null_count else text]


def _joined(*pieces: _Piece | list[_Piece]) -> pa.StringArray:
    """Literal and per-row pieces concatenated row by row, adjacent literals merged first."""
    flat: list[_Piece] = []
    for piece in pieces:
        for part in piece if isinstance(piece, list) else [piece]:
            if isinstance(part, str) and flat and isinstance(flat[-1], str):
                flat[-1] += part
            else:
                flat.append(part)
    joined: pa.StringArray = pc.binary_join_element_wise(*flat, "")
    return joined


def write_jsonl(events: pa.Table, sink: BinaryIO) -> None:
    """Append the events to `sink` as JSON lines."""
    lines = json_lines(events)
    if len(lines):
        sink.write(_utf8_bytes(lines))


def write_csv(events: pa.Table, sink: BinaryIO, *, header: bool) -> None:
    """Append the events to `sink` as CSV rows (CSV_COLUMNS), with the header row if asked."""
    table = events.append_column("input_tokens", events.column("prompt_tokens")).append_column(
        "output_tokens", events.column("completion_tokens")
    )
    pacsv.write_csv(
        table.select(list(CSV_COLUMNS)),
        sink,
        write_options=pacsv.WriteOptions(include_header=header, quoting_style="needed"),
    )


def _utf8_bytes(strings: pa.StringArray) -> memoryview:
    """The concatenated UTF-8 bytes of an Arrow string array without nulls, without copying."""
    _, offsets_buffer, data_buffer = strings.buffers()
    if offsets_buffer is None or data_buffer is None:
        return memoryview(b"")
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
    first, last = offsets[strings.offset], offsets[strings.offset + len(strings)]
    return memoryview(data_buffer)[first:last]
