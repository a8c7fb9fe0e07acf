import random

import pytest

from reconcile.lago.retry import RetryPolicy, server_delay

NOW = 1_793_491_200.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"X-RateLimit-Reset": "7"}, 7.0),
        ({"x-ratelimit-reset": " 2.5 "}, 2.5),
        ({"Retry-After": "30"}, 30.0),
        ({"Retry-After": "Sun, 01 Nov 2026 00:00:10 GMT"}, 10.0),
        ({"Retry-After": "Sun, 01 Nov 2026 00:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Reset": "-3"}, 0.0),
        ({"X-RateLimit-Reset": "4", "Retry-After": "60"}, 4.0),
        ({"X-RateLimit-Remaining": "0"}, None),
    ],
)
def test_the_servers_own_wait_is_read(headers: dict[str, str], expected: float | None) -> None:
    assert server_delay(headers, now=NOW) == expected


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(first_delay=0.5, max_delay=10)
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(10, 0.5 * 2 ** (attempt - 1))
        waits = {policy.delay(attempt, {}, rng=rng) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1  # jitter: concurrent clients do not retry in step


def test_what_the_server_says_wins_but_within_the_cap() -> None:
    policy = RetryPolicy(max_delay=30)
    rng = random.Random(1)
    assert policy.delay(1, {"X-RateLimit-Reset": "12"}, rng=rng) == 12
    assert policy.delay(1, {"Retry-After": "3600"}, rng=rng) == 30
