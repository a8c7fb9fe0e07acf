"""Benchmark parsing one page of Lago events by how its `response_cost`s are written.

    python bench/lago_page_costs.py            # 100-event pages
    python bench/lago_page_costs.py --events 2000

Pages as Lago (Rails) writes them, compact JSON: every cost a number (LiteLLM's callback), one
cost a string (one event reconcile sent, on the Postgres store), every cost a string (the
ClickHouse store), and one cost no store can sum ("n/a"). For each it prints which path
`arrow_page` took (Arrow, or the Python fallback) and the best of 7 timings in microseconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import timeit
import uuid
from typing import Any

from reconcile.lago import events


def page(count: int, kind: str, rng: random.Random) -> bytes:
    """A page of `count` events whose costs are written the `kind` way."""
    items: list[dict[str, Any]] = []
    for index in range(count):
        cost: float | str = round(rng.random() / 1000, 9)
        if kind == "all strings" or (kind == "one string" and index == count // 2):
            cost = str(cost)
        if kind == "one unsummable" and index == count // 2:
            cost = "n/a"
        items.append(
            {
                "lago_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "transaction_id": f"rc1-{rng.getrandbits(128):032x}",
                "code": "openai_tokens",
                "timestamp": "2026-11-01T00:00:01.123Z",
                "external_subscription_id": f"cust_{index % 7}",
                "properties": {
                    "model": "gpt-4o-mini",
                    "response_cost": cost,
                    "prompt_tokens": 10,
                    "completion_tokens": 20,
                    "total_tokens": 30,
                },
                "created_at": "2026-11-01T00:00:02Z",
            }
        )
    meta = {"current_page": 1, "next_page": None, "total_pages": 1, "total_count": count}
    return json.dumps({"events": items, "meta": meta}, separators=(",", ":")).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    count = parser.parse_args().events
    rng = random.Random(7)  # noqa: S311 (benchmark data)
    fallbacks = 0
    python_path = events.json_page

    def counted(content: bytes) -> Any:
        nonlocal fallbacks
        fallbacks += 1
        return python_path(content)

    events.json_page = counted
    for kind in ("all numbers", "one string", "all strings", "one unsummable"):
        content = page(count, kind, rng)
        fallbacks = 0
        events.arrow_page(content)
        path = "python" if fallbacks else "arrow"
        runs = max(1, 20_000 // count)
        best = min(
            timeit.repeat(functools.partial(events.arrow_page, content), number=runs, repeat=7)
        )
        print(f"{kind:15s} {path:7s} {best / runs * 1e6:9.0f} us/page")


if __name__ == "__main__":
    main()
