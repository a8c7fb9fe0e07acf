"""Benchmark listing a day of events from the Lago emulator, as reconcile's client pages it.

    python bench/lago_emulator_list.py                       # 1,000,000 events, postgres store
    python bench/lago_emulator_list.py --events 200000 --store clickhouse

The emulator runs in its own process, so that client and server do not share a GIL: this
script again, with --serve, as `reconcile lago-emulator` has no way to preload. It preloads
--events events spread over one day (LagoEmulator.preload, what single POSTs would store):
500 subscriptions, random uuid4 transaction ids; most sent by LiteLLM's live callback without
a timestamp (Lago's reception time, to the microsecond), --backfilled of them sent later by
reconcile with their own timestamp (to the millisecond). Then, through plain httpx, it lists
the whole day in one-hour slices with per_page=2000, twice (the first pass builds the index
and serializes every event once), then --subscriptions subscriptions' days the same way.
It prints preload seconds, listing seconds, requests, events/s, the slowest request (the
first sorts every event) and the emulator's peak RSS.
Figures go to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from reconcile.lago_emulator import LagoEmulator

KEY = "bench-key"
CODE = "openai_tokens"
DAY = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
US = 10**6
SUBSCRIPTIONS = [f"cust_{index:04d}" for index in range(500)]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "gemini-1.5-flash"]
CHUNK = 100_000  # events generated, then preloaded, at a time: generation is not timed


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def day_of_events(
    count: int, backfilled: float, seed: int
) -> Iterator[tuple[dict[str, Any], dt.datetime]]:
    """`count` events over DAY in arrival order, each with its reception time."""
    rng = random.Random(seed)  # noqa: S311  (benchmark data)
    offsets = sorted(rng.randrange(86_400 * US) for _ in range(count))
    for offset in offsets:
        happened = DAY + dt.timedelta(microseconds=offset)
        prompt, completion = rng.randint(10, 4000), rng.randint(1, 1500)
        event: dict[str, Any] = {
            "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "external_subscription_id": rng.choice(SUBSCRIPTIONS),
            "code": CODE,
            "properties": {
                "model": rng.choice(MODELS),
                "response_cost": round((prompt * 0.15 + completion * 0.6) / US, 10),
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        received = happened
        if rng.random() < backfilled:  # reconcile: endTime exact to the ms, hours later
            seconds, fraction = divmod(offset, US)
            event["timestamp"] = f"{int(DAY.timestamp()) + seconds}.{fraction // 1000:03d}"
            received += dt.timedelta(seconds=rng.randrange(3600, 6 * 3600))
        yield event, received


def serve(arguments: argparse.Namespace) -> None:
    """The emulator's process: preload, print where it listens, serve until stdin closes."""
    emulator = LagoEmulator(api_key=KEY, store=arguments.store)
    events = day_of_events(arguments.events, arguments.backfilled, arguments.seed)
    preloading = generating = 0.0
    stored = 0
    times: deque[dt.datetime] = deque()  # the reception time of each event generated

    def received(_event: object) -> dt.datetime:
        return times.popleft()

    while True:
        started = time.perf_counter()
        chunk = list(itertools.islice(events, CHUNK))
        generating += time.perf_counter() - started
        if not chunk:
            break
        times.extend(at for _, at in chunk)
        started = time.perf_counter()
        stored += emulator.preload((event for event, _ in chunk), received=received)
        preloading += time.perf_counter() - started
        progress(f"preloaded {stored:,} events")
    with emulator:
        report = {"url": emulator.url, "stored": stored, "preload": preloading}
        print(json.dumps({**report, "generate": generating}), flush=True)
        sys.stdin.read()


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = (line.split(":") for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {name: int(value.split()[0]) for name, value in fields}


def list_day(
    http: httpx.Client, subscription: str | None = None
) -> tuple[int, int, list[str], float]:
    """Requests, events listed, their transaction ids, the slowest request's seconds."""
    requests = listed = 0
    slowest = 0.0
    ids: list[str] = []
    for hour in range(24):
        slice_start = DAY + dt.timedelta(hours=hour)
        params = {
            "code": CODE,
            "timestamp_from": slice_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timestamp_to": slice_start.strftime("%Y-%m-%dT%H:59:59.999999Z"),
            "per_page": "2000",
        }
        if subscription is not None:
            params["external_subscription_id"] = subscription
        page: int | None = 1
        while page is not None:
            began = time.perf_counter()
            response = http.get("/api/v1/events", params={**params, "page": str(page)})
            response.raise_for_status()
            slowest = max(slowest, time.perf_counter() - began)
            body = response.json()
            requests += 1
            listed += len(body["events"])
            ids.extend(event["transaction_id"] for event in body["events"])
            page = body["meta"]["next_page"]
    return requests, listed, ids, slowest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["postgres", "clickhouse"], default="postgres")
    parser.add_argument("--backfilled", type=float, default=0.2, help="share sent by reconcile")
    parser.add_argument("--subscriptions", type=int, default=20, help="days listed one by one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments)
        return
    command = [sys.executable, __file__, "--serve", "--events", str(arguments.events),
               "--store", arguments.store, "--backfilled", str(arguments.backfilled),
               "--seed", str(arguments.seed)]  # fmt: skip
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(server.stdout.readline() if server.stdout else "null")
        if not started:
            raise SystemExit("the Lago emulator did not start")
        after_preload = memory_kb(server.pid)
        auth = {"Authorization": f"Bearer {KEY}"}
        rows = []
        with httpx.Client(base_url=started["url"], headers=auth, timeout=600) as http:
            for name in ("whole day, first pass", "whole day, again"):
                progress(f"listing: {name}")
                began = time.perf_counter()
                requests, listed, ids, slowest = list_day(http)
                seconds = time.perf_counter() - began
                if listed != started["stored"] or len(set(ids)) != listed:
                    raise SystemExit(f"listed {listed:,} ({len(set(ids)):,} distinct ids)")
                rows.append((name, requests, listed, seconds, slowest))
            progress(f"listing: {arguments.subscriptions} subscriptions")
            began = time.perf_counter()
            totals = [0, 0]
            slowest = 0.0
            for subscription in SUBSCRIPTIONS[: arguments.subscriptions]:
                requests, listed, _, slowest_here = list_day(http, subscription)
                totals = [totals[0] + requests, totals[1] + listed]
                slowest = max(slowest, slowest_here)
            name = f"{arguments.subscriptions} subscriptions, one by one"
            rows.append((name, totals[0], totals[1], time.perf_counter() - began, slowest))
        peak = memory_kb(server.pid)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=60)
    stored, preload = started["stored"], started["preload"]
    print(f"{arguments.store} store, {stored:,} events over one day")
    print(
        f"preload: {preload:.1f} s ({stored / preload:,.0f} events/s; "
        f"generating them took another {started['generate']:.1f} s)"
    )
    print(
        "| listing (hour slices, per_page 2000) | requests | events | seconds | events/s "
        "| slowest request (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, requests, listed, seconds, slowest in rows:
        print(
            f"| {name} | {requests:,} | {listed:,} | {seconds:.1f} | {listed / seconds:,.0f} "
            f"| {slowest:.2f} |"
        )
    print(
        f"emulator RSS: {after_preload['VmRSS'] / 1024:,.0f} MB after preload, "
        f"peak {peak['VmHWM'] / 1024:,.0f} MB"
    )


if __name__ == "__main__":
    main()
