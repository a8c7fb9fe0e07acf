"""Benchmark sending events to Lago: reconcile's client against one request per event.

    python bench/lago_send.py                       # 100,000 events, 20 ms per request
    python bench/lago_send.py --events 20000 --latency 0.05

It starts `reconcile lago-emulator` in its own process with the given latency added to every
request, then, in the same run:
  - sends --events events through LagoClient (batches of 100, 4 in flight);
  - sends --baseline events one POST /api/v1/events each, 4 in flight, on kept-alive
    connections: what LiteLLM's live callback does, at its best.
It prints events/s and requests made for each, and their ratio (target >= 20).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from reconcile.lago.client import LagoClient

KEY = "bench-key"
MIDNIGHT = 1_793_491_200


def event(index: int, prefix: str) -> dict[str, Any]:
    return {
        "transaction_id": f"{prefix}-{index:012d}",
        "external_subscription_id": f"cust_{index % 500:04d}",
        "code": "openai_tokens",
        "timestamp": f"{MIDNIGHT + index * 0.8:.3f}",
        "properties": {
            "model": "gpt-4o-mini",
            "response_cost": "0.00010725",
            "prompt_tokens": 179,
            "completion_tokens": 134,
            "total_tokens": 313,
            "input_tokens": 179,
            "output_tokens": 134,
            "litellm_request_id": f"chatcmpl-{index:029d}",
        },
    }


def start_emulator(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile",
            "lago-emulator",
            "--port",
            "0",
            "--latency",
            str(latency),
        ],
        env={**os.environ, "LAGO_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = process.stdout.readline().strip() if process.stdout else ""
    if not url:
        raise SystemExit("the Lago emulator did not start")
    return process, url


def one_per_event(url: str, count: int, concurrency: int) -> float:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:

        def post(index: int) -> None:
            http.post("/api/v1/events", json={"event": event(index, "single")}).raise_for_status()

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(count)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000, help="events sent one per request")
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to every request"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    arguments = parser.parse_args()
    process, url = start_emulator(arguments.latency)
    try:
        with LagoClient(url, KEY, concurrency=arguments.concurrency) as client:
            started = time.perf_counter()
            report = client.send_events(event(index, "rc1") for index in range(arguments.events))
            batched = time.perf_counter() - started
        single = one_per_event(url, arguments.baseline, arguments.concurrency)
    finally:
        process.terminate()
        process.wait()
    if report.sent != arguments.events:
        raise SystemExit(f"not every event was delivered: {report}")
    batched_rate, single_rate = arguments.events / batched, arguments.baseline / single
    print(
        f"latency {arguments.latency * 1000:.0f} ms per request, {arguments.concurrency} in flight"
    )
    print("| sender | events | requests | seconds | events/s |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("reconcile (batches of 100)", arguments.events, report.requests, batched, batched_rate),
        ("one request per event", arguments.baseline, arguments.baseline, single, single_rate),
    ]
    for name, events, requests, seconds, rate in rows:
        print(f"| {name} | {events:,} | {requests:,} | {seconds:.1f} | {rate:,.0f} |")
    print(f"ratio: {batched_rate / single_rate:.0f}x (target >= 20x)")


if __name__ == "__main__":
    main()
