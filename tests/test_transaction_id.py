"""The transaction id is a contract for ever: pinned by known answers, checked by properties."""

import hashlib
import string

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.postgres import Database, connect
from reconcile.transaction_id import LENGTH, IdBasis, transaction_id, transaction_ids

ROW_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("call_id", pa.string()),
        ("start_ms", pa.int64()),
        ("created_ms", pa.int64()),
    ]
)


def table(rows: list[tuple[str, str | None, int, int | None]]) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(ROW_SCHEMA.names, row, strict=True)) for row in rows], schema=ROW_SCHEMA
    )


# Known answers: if one of these changes, every event already sent would be billed again.
@pytest.mark.parametrize(
    ("code", "request_id", "call_id", "start_ms", "shared", "expected"),
    [
        ("openai_tokens", "chatcmpl-abc", "0c7a4f9e-3d1b-4c55-9a51-1b2d3e4f5a6b", 1793491200086, False,
         "rc1-" + hashlib.sha256(
             b"rc1\x1fopenai_tokens\x1fcall\x1f0c7a4f9e-3d1b-4c55-9a51-1b2d3e4f5a6b\x1f1793491200086"
         ).hexdigest()[:32]),
        ("openai_tokens", "chatcmpl-abc", None, 1793491200086, False,
         "rc1-" + hashlib.sha256(b"rc1\x1fopenai_tokens\x1frequest\x1fchatcmpl-abc").hexdigest()[:32]),
        ("openai_tokens", "chatcmpl-abc", "c", 1, True,
         "rc1-" + hashlib.sha256(b"rc1\x1fopenai_tokens\x1frequest\x1fchatcmpl-abc").hexdigest()[:32]),
    ],
)  # fmt: skip
def test_the_formula_is_the_documented_one(
    code: str, request_id: str, call_id: str | None, start_ms: int, shared: bool, expected: str
) -> None:
    assert (
        transaction_id(
            code, request_id=request_id, call_id=call_id, start_ms=start_ms, shared=shared
        )
        == expected
    )


def test_version_one_is_pinned() -> None:
    # Literal values, computed once with `printf ... | sha256sum`: they must never change.
    assert transaction_id(
        "openai_tokens", request_id="chatcmpl-x", call_id="call-1", start_ms=1793491200086
    ) == ("rc1-4651206beaf3d1859857d041ea104ae9")
    assert transaction_id(
        "openai_tokens", request_id="chatcmpl-x_cache_hit1793491201", call_id=None, start_ms=0
    ) == ("rc1-c28049b9012729d6a0f6c845445ba762")


def test_the_sql_recipe_in_the_docs_gives_the_same_ids(pg_admin: Database) -> None:
    code, call_id, start_ms, request_id = "tokens", "kéy-ü-1", 1793491200086, "chatcmpl-é"
    with connect(pg_admin) as connection:
        row = connection.execute(
            "SELECT 'rc1-' || left(encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 32),"
            "       'rc1-' || left(encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 32)",
            (
                f"rc1\x1f{code}\x1fcall\x1f{call_id}\x1f{start_ms}",
                f"rc1\x1f{code}\x1frequest\x1f{request_id}",
            ),
        ).fetchone()
        assert row is not None
        by_call, by_request = row
    assert by_call == transaction_id(
        code, request_id=request_id, call_id=call_id, start_ms=start_ms
    )
    assert by_request == transaction_id(
        code, request_id=request_id, call_id=None, start_ms=start_ms
    )


def test_ids_differ_by_event_code() -> None:
    one = transaction_id("tokens", request_id="r", call_id="c", start_ms=5)
    two = transaction_id("tokens_v2", request_id="r", call_id="c", start_ms=5)
    assert one != two


def test_two_requests_sharing_a_call_id_in_one_millisecond_get_distinct_ids() -> None:
    rows = table(
        [
            ("chatcmpl-b", "client-chosen", 1000, 5000),
            ("chatcmpl-a", "client-chosen", 1000, 5001),  # inserted later: the one that moves
            ("chatcmpl-c", "client-chosen", 1001, 5002),  # next millisecond: not shared
        ]
    )
    ids, basis = transaction_ids(rows, "tokens")
    assert ids.to_pylist() == [
        transaction_id("tokens", request_id="chatcmpl-b", call_id="client-chosen", start_ms=1000),
        transaction_id("tokens", request_id="chatcmpl-a", call_id=None, start_ms=1000),
        transaction_id("tokens", request_id="chatcmpl-c", call_id="client-chosen", start_ms=1001),
    ]
    assert basis.tolist() == [IdBasis.CALL_ID, IdBasis.REQUEST_ID_SHARED_CALL, IdBasis.CALL_ID]


def test_without_insert_times_the_request_id_decides_who_keeps_the_call_id() -> None:
    ids, basis = transaction_ids(table([("b", "same", 7, None), ("a", "same", 7, None)]), "tokens")
    assert basis.tolist() == [IdBasis.REQUEST_ID_SHARED_CALL, IdBasis.CALL_ID]
    assert ids[1].as_py() == transaction_id("tokens", request_id="a", call_id="same", start_ms=7)


request_ids = st.text(string.ascii_letters + string.digits + "-_é客", min_size=1, max_size=40)
call_ids = st.one_of(
    st.none(), st.sampled_from(["c1", "c2", "ü-call", "x" * 256]), st.text(min_size=1, max_size=20)
)
rows_strategy = st.lists(
    st.tuples(request_ids, call_ids, st.integers(0, 3), st.one_of(st.none(), st.integers(0, 5))),
    max_size=40,
    unique_by=lambda row: row[0],
)


@given(rows=rows_strategy, code=st.text(string.ascii_letters + "_", min_size=1, max_size=12))
def test_vectorised_ids_are_unique_and_match_the_reference(
    rows: list[tuple[str, str | None, int, int | None]], code: str
) -> None:
    ids, basis = transaction_ids(table(rows), code)
    values = ids.to_pylist()
    assert len(set(values)) == len(values)
    assert all(len(value) == LENGTH <= 100 and value.isascii() for value in values)
    for (request_id, call_id, start_ms, _), value, used in zip(
        rows, values, basis.tolist(), strict=True
    ):
        shared = used == IdBasis.REQUEST_ID_SHARED_CALL
        assert value == transaction_id(
            code, request_id=request_id, call_id=call_id, start_ms=start_ms, shared=shared
        )
        assert (used == IdBasis.REQUEST_ID) == (call_id is None)


@given(rows=rows_strategy, late=st.tuples(request_ids, call_ids, st.integers(0, 3)))
def test_a_row_that_arrives_later_never_changes_an_earlier_rows_id(
    rows: list[tuple[str, str | None, int, int | None]], late: tuple[str, str | None, int]
) -> None:
    rows = [(r, c, s, created if created is not None else 0) for r, c, s, created in rows]
    if any(late[0] == row[0] for row in rows):
        return
    before = transaction_ids(table(rows), "tokens")[0].to_pylist()
    after = transaction_ids(table([*rows, (*late, 99)]), "tokens")[0].to_pylist()
    assert after[: len(rows)] == before
    assert len(set(after)) == len(after)


@given(rows=rows_strategy)
def test_ids_are_deterministic_and_independent_of_row_order(
    rows: list[tuple[str, str | None, int, int | None]],
) -> None:
    forward = dict(
        zip([r[0] for r in rows], transaction_ids(table(rows), "t")[0].to_pylist(), strict=True)
    )
    backward_rows = list(reversed(rows))
    backward = dict(
        zip(
            [r[0] for r in backward_rows],
            transaction_ids(table(backward_rows), "t")[0].to_pylist(),
            strict=True,
        )
    )
    assert forward == backward
