"""Realistic `"LiteLLM_SpendLogs"` rows as a LiteLLM proxy writes them, for demos and tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import random
import string
import uuid
from collections.abc import Iterable, Iterator

import psycopg

#: USD per million input and output tokens, and the provider's response-id style.
MODELS: dict[str, tuple[float, float, str]] = {
    "gpt-4o": (2.5, 10.0, "chatcmpl"),
    "gpt-4o-mini": (0.15, 0.6, "chatcmpl"),
    "claude-3-5-sonnet-20241022": (3.0, 15.0, "msg"),
    "claude-3-5-haiku-20241022": (0.8, 4.0, "msg"),
    "gemini-1.5-flash": (0.075, 0.3, "call"),
    "text-embedding-3-small": (0.02, 0.0, "call"),
}
PROVIDERS = {"chatcmpl": "openai", "msg": "anthropic", "call": "vertex_ai"}

#: Charge-by ids that stress whatever carries them: unicode, quotes, a 200-character id.
AWKWARD_IDS = (
    "café-münchen-ü",
    "客户-北京",
    'acme "beta" \\ tools',
    "x" * 200,
)


@dataclasses.dataclass
class SpendLog:
    """One spend-log row; defaults are what LiteLLM writes for a plain successful call."""

    request_id: str
    start: dt.datetime
    end: dt.datetime
    model: str = "gpt-4o-mini"
    spend: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    end_user: str | None = ""
    user: str | None = ""
    team_id: str | None = None
    status: str | None = "success"
    litellm_call_id: str | None = None
    #: The call id in metadata; LiteLLM 1.91 to 1.102 wrote it only there.
    metadata_call_id: str | None = None
    created_at: dt.datetime | None = None
    cache_hit: str = "False"
    call_type: str = "acompletion"
    api_key: str = hashlib.sha256(b"sk-demo").hexdigest()

    @property
    def total_tokens(self) -> int:
        """What LiteLLM stores: prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens


_COLUMNS = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "model",
    "model_group",
    "custom_llm_provider",
    "user",
    "team_id",
    "end_user",
    "metadata",
    "cache_hit",
    "status",
    "litellm_call_id",
    "created_at",
)


def insert_spend_logs(connection: psycopg.Connection, rows: Iterable[SpendLog]) -> int:
    """COPY the rows into `"LiteLLM_SpendLogs"`; returns how many."""
    columns = ", ".join(f'"{name}"' for name in _COLUMNS)
    count = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(f'COPY "LiteLLM_SpendLogs" ({columns}) FROM STDIN') as copy,
    ):
        for row in rows:
            metadata = {"litellm_call_id": row.metadata_call_id} if row.metadata_call_id else {}
            if row.team_id:
                metadata["user_api_key_team_id"] = row.team_id
            copy.write_row(
                (
                    row.request_id,
                    row.call_type,
                    row.api_key,
                    row.spend,
                    row.total_tokens,
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.start,
                    row.end,
                    row.model,
                    row.model,
                    PROVIDERS[MODELS.get(row.model, (0, 0, "call"))[2]],
                    row.user,
                    row.team_id,
                    row.end_user,
                    json.dumps(metadata),
                    row.cache_hit,
                    row.status,
                    row.litellm_call_id,
                    row.created_at or row.end + dt.timedelta(seconds=3),
                )
            )
            count += 1
    return count


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """LiteLLM's cost arithmetic: tokens times a per-token price, in floating point."""
    input_price, output_price, _ = MODELS[model]
    return prompt_tokens * (input_price / 1e6) + completion_tokens * (output_price / 1e6)


class SpendLogFactory:
    """Deterministic (by seed) generator of a day of proxy traffic with its odd corners."""

    def __init__(self, seed: int = 0) -> None:
        self.random = random.Random(seed)
        self.customers = [f"cust_{index:04d}" for index in range(1, 61)]
        self.users = [f"user{index:02d}@example.com" for index in range(1, 31)]
        self.teams = ["team-search", "team-support", "team-ml", "team-growth", "team-infra"]

    def customer(self) -> str:
        """An end-user id: a few big customers, a long tail, and now and then an awkward id."""
        if self.random.random() < 0.01:
            return self.random.choice(AWKWARD_IDS)
        rank = int(self.random.paretovariate(1.2)) - 1
        return self.customers[min(rank, len(self.customers) - 1)]

    def call_id(self) -> str:
        """A LiteLLM call id: a uuid4."""
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def response_id(self, model: str) -> str:
        """The provider's response id LiteLLM stores as request_id."""
        style = MODELS[model][2]
        alphabet = string.ascii_letters + string.digits
        if style == "chatcmpl":
            return "chatcmpl-" + "".join(self.random.choices(alphabet, k=29))
        if style == "msg":
            return "msg_" + "".join(self.random.choices(alphabet, k=24))
        return self.call_id()

    def success(self, start: dt.datetime, **overrides: object) -> SpendLog:
        """A successful request starting at `start` (ms precision), billed to a random customer."""
        rnd = self.random
        model = rnd.choices(list(MODELS), weights=[12, 40, 10, 10, 8, 20])[0]
        prompt = max(1, int(rnd.lognormvariate(6.0, 1.1)))
        completion = (
            0 if model.startswith("text-embedding") else max(1, int(rnd.lognormvariate(5.0, 1.0)))
        )
        streaming = rnd.random() < 0.1
        latency = rnd.uniform(5, 600) if streaming else rnd.lognormvariate(0.3, 0.8)
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        end = start + dt.timedelta(milliseconds=round(latency * 1000))
        call_id = self.call_id()
        row = SpendLog(
            request_id=self.response_id(model),
            start=start,
            end=end,
            model=model,
            spend=cost(model, prompt, completion),
            prompt_tokens=prompt,
            completion_tokens=completion,
            end_user=self.customer(),
            user=rnd.choice(self.users),
            team_id=rnd.choice(self.teams),
            litellm_call_id=call_id,
            metadata_call_id=call_id,
            created_at=end + dt.timedelta(milliseconds=rnd.randint(2_000, 30_000)),
            call_type="aembedding" if completion == 0 else "acompletion",
        )
        return dataclasses.replace(row, **overrides)  # type: ignore[arg-type]

    def cache_hit(self, of: SpendLog, start: dt.datetime) -> SpendLog:
        """A cache hit answering the same prompt: zero cost, `<id>_cache_hit<unix time>` id."""
        end = start + dt.timedelta(milliseconds=self.random.randint(3, 40))
        call_id = self.call_id()
        drawn = end.replace(tzinfo=dt.UTC).timestamp() + self.random.random() / 1000
        return dataclasses.replace(
            of,
            request_id=f"{of.request_id}_cache_hit{drawn}",
            start=start,
            end=end,
            spend=0.0,
            cache_hit="True",
            litellm_call_id=call_id,
            metadata_call_id=call_id,
            created_at=end + dt.timedelta(seconds=5),
        )

    def failure(self, start: dt.datetime, *, partial_cost: bool) -> SpendLog:
        """A failed request: no cost, or the partial cost of a broken stream."""
        row = self.success(start)
        spent = row.spend * self.random.uniform(0.1, 0.9) if partial_cost else 0.0
        return dataclasses.replace(
            row,
            status="failure",
            spend=spent,
            completion_tokens=0 if not partial_cost else row.completion_tokens,
        )

    def day(self, day: dt.date, rows: int) -> Iterator[SpendLog]:
        """`rows` rows of one UTC day's traffic, in start order, with every kind LiteLLM writes."""
        rnd = self.random
        midnight = dt.datetime.combine(day, dt.time())
        # More traffic in the working hours of Europe and the Americas.
        weights = [2 + 8 * math.sin(math.pi * hour / 24) ** 2 for hour in range(24)]
        hours = rnd.choices(range(24), weights=weights, k=rows)
        offsets = sorted(hour * 3_600_000 + rnd.randrange(3_600_000) for hour in hours)
        recent: list[SpendLog] = []
        seen: set[str] = set()
        produced = 0
        for offset in offsets:
            if produced >= rows:
                break
            start = midnight + dt.timedelta(milliseconds=offset)
            for row in self._rows_starting(start, recent, room=rows - produced):
                if row.request_id in seen:
                    continue  # LiteLLM's writer drops a duplicate request_id too
                seen.add(row.request_id)
                if row.status == "success" and row.cache_hit == "False" and len(recent) < 500:
                    recent.append(row)
                yield row
                produced += 1

    def _rows_starting(  # noqa: PLR0911 (a table of row kinds by frequency)
        self, start: dt.datetime, recent: list[SpendLog], room: int
    ) -> list[SpendLog]:
        """One request starting at `start`, now and then two (a reused client call id)."""
        kind = self.random.random()
        if kind < 0.05 and recent:
            return [self.cache_hit(self.random.choice(recent), start)]
        if kind < 0.06:
            return [self.failure(start, partial_cost=False)]
        if kind < 0.07:
            return [self.failure(start, partial_cost=True)]
        if kind < 0.085:
            return [self.success(start, end_user="")]
        if kind < 0.09:
            return [self.success(start, end_user=None, team_id=None)]
        if kind < 0.095:
            return [self.success(start, litellm_call_id=None)]  # proxy 1.91 to 1.102
        if kind < 0.097:
            return [self.success(start, litellm_call_id=None, metadata_call_id=None)]  # older
        if kind < 0.098 and room >= 2:
            # A client that reuses its x-litellm-call-id: two requests in one millisecond.
            first = self.success(start)
            call_id = first.litellm_call_id
            return [first, self.success(start, litellm_call_id=call_id, metadata_call_id=call_id)]
        return [self.success(start)]
