"""Stable Lago transaction ids: the contract that makes every backfill safe to run again.

Version 1 (`rc1-`), a contract for ever: changing it for rows already sent bills them twice.

    identity = "call"    SEP litellm_call_id SEP start_ms   (the usual case)
             | "request" SEP request_id                      (no call id, or a shared one)
    transaction_id = "rc1-" + hex(sha256("rc1" SEP code SEP identity))[:32]

SEP is U+001F. `start_ms` is the row's `"startTime"` in Unix milliseconds, in decimal. The
result is 36 ASCII characters; 128 bits make an accidental collision practically impossible.

Why these inputs:
- `litellm_call_id` + `startTime` can be computed both from a spend-log row and inside a
  LiteLLM callback (`kwargs["litellm_call_id"]`, `start_time` in UTC rounded to the ms), so a
  future live callback can send the very ids a backfill would. `request_id` cannot be: cache
  hits get a `_cache_hit<time>` suffix drawn while the row is written, and its derivation has
  changed across LiteLLM releases.
- A client may choose its call id (`x-litellm-call-id`), so the call id alone could merge
  requests; with the server-stamped start millisecond, two rows share an identity only when
  the same call id starts twice in one millisecond. The reader sees such rows together and
  gives all but the first (by insert time, then `request_id`) the `request` identity: every
  row still gets its own id, and a row that arrives late never changes an earlier row's id.
- Rows written before LiteLLM recorded call ids have the `request` identity: `request_id` is
  the table's primary key, so it is unique.
- The event code is an input so one request billed under two metrics gets two ids (Lago
  dedupes per subscription and transaction id, whatever the code).
- sha256 can be recomputed anywhere, Postgres included:
  `'rc1-' || left(encode(sha256(convert_to(..., 'UTF8')), 'hex'), 32)`.
"""

from __future__ import annotations

import enum
import hashlib
from operator import methodcaller

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

VERSION = "rc1"
PREFIX = f"{VERSION}-"
SEP = "\x1f"
HEX_DIGITS = 32
LENGTH = len(PREFIX) + HEX_DIGITS


class IdBasis(enum.IntEnum):
    """Which identity a transaction id was computed from."""

    CALL_ID = 0
    REQUEST_ID = 1
    """The row has no call id (written before LiteLLM recorded one)."""
    REQUEST_ID_SHARED_CALL = 2
    """Another row started in the same millisecond with the same call id."""


def transaction_id(
    code: str, *, request_id: str, call_id: str | None, start_ms: int, shared: bool = False
) -> str:
    """The id of one row's event: the reference a LiteLLM callback can reproduce.

    `shared` is true for every row but the first of those that share `call_id` and `start_ms`.
    """
    if call_id and not shared:
        identity = f"call{SEP}{call_id}{SEP}{start_ms}"
    else:
        identity = f"request{SEP}{request_id}"
    digest = hashlib.sha256(f"{VERSION}{SEP}{code}{SEP}{identity}".encode()).hexdigest()
    return PREFIX + digest[:HEX_DIGITS]


def transaction_ids(rows: pa.Table, code: str) -> tuple[pa.StringArray, np.ndarray]:
    """The ids of a chunk of rows (request_id, call_id, start_ms, created_ms), and their basis.

    Rows sharing a call id and start millisecond must all be in `rows`: the reader's chunks
    never split a millisecond.
    """
    ids, basis, _ = identities(rows, code)
    return ids, basis


def identities(rows: pa.Table, code: str) -> tuple[pa.StringArray, np.ndarray, pa.Array]:
    """`transaction_ids`, and for rows sharing a call id and start millisecond their other id.

    Which of those rows keeps the call id depends on their insert times, and a row inserted
    late may have the earlier one: an id sent before it came is then the other identity of its
    row. The matcher accepts either (with the row's own subscription and cost). Other rows get
    a null alternate; the few alternates cost one more hash each.
    """
    call_id = rows.column("call_id").combine_chunks()
    has_call = pc.is_valid(call_id).to_numpy(zero_copy_only=False)
    shared, grouped = _shared_call_ids(rows)
    ids = _ids(rows, code, by_request=~has_call | shared)
    basis = np.select(
        [shared, ~has_call], [IdBasis.REQUEST_ID_SHARED_CALL, IdBasis.REQUEST_ID], IdBasis.CALL_ID
    ).astype(np.int8)
    alternates = pa.nulls(rows.num_rows, pa.string())
    if grouped.any():
        members = rows.filter(pa.array(grouped))
        others = _ids(members, code, by_request=~shared[grouped])
        alternates = pc.replace_with_mask(alternates, pa.array(grouped), others)
    return ids, basis, alternates


def _ids(rows: pa.Table, code: str, *, by_request: np.ndarray) -> pa.StringArray:
    """Each row's id from its call identity, or from its request identity where `by_request`."""
    keys = pc.binary_join_element_wise(
        f"{VERSION}{SEP}{code}{SEP}call",
        rows.column("call_id").combine_chunks(),
        pc.cast(rows.column("start_ms").combine_chunks(), pa.string()),
        SEP,
    )
    if by_request.any():
        request_ids = rows.column("request_id").combine_chunks().filter(pa.array(by_request))
        request_keys = pc.binary_join_element_wise(
            f"{VERSION}{SEP}{code}{SEP}request", request_ids, SEP
        )
        keys = pc.replace_with_mask(keys, pa.array(by_request), request_keys)
    messages = pc.cast(keys, pa.binary()).to_pylist()
    digests = b"".join(map(methodcaller("digest"), map(hashlib.sha256, messages)))
    return _prefixed_hex(digests, len(messages))


def _shared_call_ids(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Which rows share their call identity with an earlier one, and which with any other.

    The first: every row but the first (by insert time, then request_id) of a shared identity;
    the second: every row of such a group (two rows or more).
    """
    order = pc.sort_indices(
        rows.select(["start_ms", "call_id", "created_ms", "request_id"]),
        sort_keys=[
            ("start_ms", "ascending"),
            ("call_id", "ascending"),
            ("created_ms", "ascending"),
            ("request_id", "ascending"),
        ],
    )
    start_ms = rows.column("start_ms").take(order).to_numpy()
    call_id = rows.column("call_id").take(order).combine_chunks()
    same_as_previous = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        same_call = pc.fill_null(pc.equal(call_id[1:], call_id[:-1]), False)
        same_as_previous[1:] = (start_ms[1:] == start_ms[:-1]) & same_call.to_numpy(
            zero_copy_only=False
        )
    same_as_next = np.r_[same_as_previous[1:], False]
    positions = order.to_numpy()
    shared, grouped = np.empty(len(order), dtype=bool), np.empty(len(order), dtype=bool)
    shared[positions] = same_as_previous
    grouped[positions] = same_as_previous | same_as_next
    return shared, grouped


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _prefixed_hex(digests: bytes, count: int) -> pa.StringArray:
    """`PREFIX` + the first HEX_DIGITS hex digits of each 32-byte digest, as one Arrow array."""
    head = np.frombuffer(digests, dtype=np.uint8).reshape(count, 32)[:, : HEX_DIGITS // 2]
    text = np.empty((count, LENGTH), dtype=np.uint8)
    text[:, : len(PREFIX)] = np.frombuffer(PREFIX.encode(), dtype=np.uint8)
    text[:, len(PREFIX) :: 2] = _HEX[head >> 4]
    text[:, len(PREFIX) + 1 :: 2] = _HEX[head & 15]
    offsets = np.arange(0, LENGTH * (count + 1), LENGTH, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )
