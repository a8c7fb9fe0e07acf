"""Real LiteLLM traffic, offline: the spend-log row its proxy writes and the event its Lago callback sends.

LiteLLM is imported lazily (by `drive`, on first use), so that collecting the tests costs
nothing. Every request goes the proxy's way, with no network:

- the client's body goes through the proxy's own `add_litellm_data_to_request` (a real
  starlette `Request`; a `UserAPIKeyAuth` as the proxy's auth builds it: hashed key, user,
  team, and the body's `user` as end user), then gets a `litellm_call_id` as
  `common_request_processing` gives it;
- it is then sent as `route_request` does: to `litellm.<call>(**data)` when the proxy has no
  router (`direct`), or to a `litellm.Router` holding one deployment (`router`, as with a
  `model_list` config, the model group being the client's model name), the deployment's
  settings (`mock_response`, `base_model`, `api_base`, ...) added server side, never by the
  client (the proxy strips a client's `mock_response`);
- one `CustomLogger` in `litellm.callbacks` captures what LiteLLM hands success callbacks, and
  builds the row right there, as the proxy's own success callback does: `get_logging_payload`,
  then `DBSpendUpdateWriter.update_database`'s edits (spend from the standard logging payload,
  times as ISO strings), `spend_log_row_with_retained_metadata`, `jsonify_object`, and it is
  inserted with LiteLLM's own statement (`spend_log_insert_statement`: the ledger writer's
  `jsonb_populate_recordset`, which rounds the times to the millisecond);
- the event is sent later, by a real `LagoLogger().async_log_success_event` given the same four
  arguments, to whatever `LAGO_API_BASE` names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

END_USER = "cust-interop"
USER = "user-interop@example.com"
TEAM = "team-interop"
API_KEY = "sk-interop-test-key"
#: How long after a row's endTime Lago receives the callback's event (it stamps reception).
RECEPTION_DELAY = dt.timedelta(milliseconds=250)
#: Stands for the local OpenAI-compatible server's URL in a deployment's settings.
LOCAL_OPENAI = "<local openai server>"

ROUTES = ("direct", "router")

_PATHS = {
    "acompletion": "/chat/completions",
    "aembedding": "/embeddings",
    "aresponses": "/responses",
}
_MOCK = {"mock_response": "Hello from the interop matrix."}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cell of the matrix: a deployment and how it is called."""

    name: str
    model: str
    """The deployment's `litellm_params.model`, as a proxy config holds it."""
    call: str = "acompletion"
    deployment: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(_MOCK))
    """More `litellm_params` of the deployment (server side, never from the client)."""
    base_model: str | None = None
    """Pricing model: `model_info.base_model` behind a router, the `base_model` param without."""
    stream: bool = False
    cache_hit: bool = False
    """Send the request twice with LiteLLM's in-memory cache on: the second is a cache hit."""
    wildcard: bool = False
    """Behind the router, a `<provider>/*` deployment answers (the client names the model)."""
    routes: tuple[str, ...] = ROUTES


#: The providers and call types; priced models exist in 1.110.2's bundled cost map.
MATRIX = (
    Entry("bedrock-region-prefix", "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    Entry("bedrock", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"),
    Entry(
        "bedrock-converse-route", "bedrock/converse/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    ),
    # gemini-1.5-pro and gemini-1.5-flash are gone from 1.110.2's map: 2.5 stands in.
    Entry("vertex_ai", "vertex_ai/gemini-2.5-pro"),
    Entry(
        "azure-base-model",
        "azure/acme-gpt4o-deployment",
        base_model="azure/gpt-4o",
        deployment={
            **_MOCK,
            "api_base": "https://acme.openai.azure.com",
            "api_key": "azure-key",
            "api_version": "2024-06-01",
        },
    ),
    Entry("azure-known-model", "azure/gpt-4o"),
    # claude-3-5-sonnet-20240620 is gone from the map for the anthropic provider.
    Entry("anthropic", "anthropic/claude-sonnet-4-5-20250929"),
    Entry(
        "anthropic-wildcard",
        "anthropic/claude-sonnet-4-5-20250929",
        wildcard=True,
        routes=("router",),
    ),
    # 1.110.2's map holds no openrouter model at all: this one is unpriced.
    Entry("openrouter-nested", "openrouter/openai/gpt-4o"),
    Entry("together_ai", "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    Entry("gemini", "gemini/gemini-2.5-flash"),
    # The map's groq models are all nested (groq/<org>/<model>); no llama3 is left.
    Entry("groq-nested", "groq/openai/gpt-oss-20b"),
    Entry("unknown-model", "openai/acme-unknown-model"),
    Entry("streaming", "openai/gpt-4o-mini", stream=True),
    # A local server answers as OpenAI does: litellm's mock embedding says total_tokens=0.
    Entry(
        "embedding",
        "text-embedding-3-small",
        call="aembedding",
        deployment={"api_base": LOCAL_OPENAI, "api_key": "sk-local"},
    ),
    Entry("cache-hit", "openai/gpt-4o-mini", cache_hit=True),
    Entry("responses-api", "openai/gpt-4o-mini", call="aresponses"),
)


@dataclasses.dataclass
class Call:
    """What LiteLLM handed its success callbacks for one request, and the row its proxy writes."""

    kwargs: dict[str, Any]
    response_obj: Any
    start_time: dt.datetime
    end_time: dt.datetime
    payload: dict[str, Any]
    """`get_logging_payload`'s own answer, before the DB writer's edits."""
    row: dict[str, Any] | None
    """The row as the proxy inserts it (JSON columns as text), None when the proxy writes none."""

    @property
    def reception(self) -> dt.datetime:
        """When Lago receives (and stamps) this request's callback event: after the row's end."""
        return self.payload["endTime"] + RECEPTION_DELAY


@dataclasses.dataclass
class Traffic:
    """The calls one entry made over one route (two for a cache hit)."""

    entry: Entry
    route: str
    calls: list[Call]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows the proxy writes for these calls."""
        return [call.row for call in self.calls if call.row is not None]


def proxy_row(kwargs: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """`DBSpendUpdateWriter.update_database`'s row from `get_logging_payload`'s payload.

    `_PROXY_track_cost_callback` takes the cost from the standard logging payload; when that is
    None it raises "Cost tracking failed" and no row is written at all.
    """
    from litellm.litellm_core_utils.core_helpers import finite_cost
    from litellm.proxy.spend_tracking.spend_tracking_utils import (
        configured_spend_logs_metadata_fields,
        spend_log_row_with_retained_metadata,
    )
    from litellm.proxy.utils import jsonify_object

    standard = kwargs.get("standard_logging_object")
    cost = finite_cost((standard if standard is not None else kwargs).get("response_cost"))
    if cost is None:
        return None
    row = dict(payload)
    row["spend"] = cost or 0.0
    row["startTime"] = row["startTime"].isoformat()
    row["endTime"] = row["endTime"].isoformat()
    retained = spend_log_row_with_retained_metadata(row, configured_spend_logs_metadata_fields())
    return dict(jsonify_object(dict(retained)))


def insert_rows(connection: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """Insert with LiteLLM's own statement (the ledger writer's), one statement per key set."""
    from litellm.repositories.spend_log_insert import spend_log_insert_statement

    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(tuple(sorted(row)), []).append(row)
    for group in by_keys.values():
        statement, values = spend_log_insert_statement(group)
        inserted = connection.execute(statement.replace("$1", "%s"), (values,)).fetchall()
        assert len(inserted) == len(group), "LiteLLM's writer dropped a duplicate request_id"


def _request(path: str) -> Any:
    from starlette.requests import Request

    return Request(
        {
            "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "scheme": "http",
            "server": ("litellm-proxy", 4000), "client": ("127.0.0.1", 50000),
            "headers": [(b"content-type", b"application/json"),
                        (b"authorization", f"Bearer {API_KEY}".encode())],
        }
    )  # fmt: skip


def _auth(end_user: str | None) -> Any:
    """What `user_api_key_auth` returns for a key of USER in TEAM (end user: the body's)."""
    from litellm.proxy._types import UserAPIKeyAuth
    from litellm.proxy.utils import hash_token

    return UserAPIKeyAuth(
        api_key=hash_token(API_KEY), token=hash_token(API_KEY), key_alias="interop-key",
        user_id=USER, team_id=TEAM, end_user_id=end_user,
    )  # fmt: skip


def _body(entry: Entry, model: str) -> dict[str, Any]:
    prompt = f"Interop matrix, {entry.name}: say hello."
    body: dict[str, Any] = {"model": model, "user": END_USER}
    if entry.call == "aembedding":
        body["input"] = [prompt]
    elif entry.call == "aresponses":
        body["input"] = prompt
    else:
        body["messages"] = [{"role": "user", "content": prompt}]
    if entry.stream:
        body["stream"] = True
    return body


async def _proxy_data(entry: Entry, model: str) -> dict[str, Any]:
    from litellm.proxy.litellm_pre_call_utils import add_litellm_data_to_request
    from litellm.proxy.proxy_server import ProxyConfig

    body = _body(entry, model)
    data: dict[str, Any] = await add_litellm_data_to_request(
        data=dict(body), request=_request(_PATHS[entry.call]), user_api_key_dict=_auth(body["user"]),
        proxy_config=ProxyConfig(), general_settings={}, version="1.110.2",
    )  # fmt: skip
    data["litellm_call_id"] = str(uuid.uuid4())  # no x-litellm-call-id header: a uuid4
    return data


class _Driver:
    """Sends requests and collects what the one capturing success callback saw."""

    def __init__(self, local_openai: str) -> None:
        import litellm
        from litellm.integrations.custom_logger import CustomLogger
        from litellm.proxy.spend_tracking.spend_tracking_utils import get_logging_payload

        self.litellm = litellm
        self.local_openai = local_openai
        self.router: Any = None
        self.calls: list[Call] = []
        driver = self

        class Capture(CustomLogger):  # type: ignore[misc]
            async def async_log_success_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                payload = dict(
                    get_logging_payload(
                        kwargs=kwargs, response_obj=response_obj, start_time=start_time,
                        end_time=end_time, llm_router=driver.router,
                    )
                )  # fmt: skip
                driver.calls.append(
                    Call(
                        kwargs,
                        response_obj,
                        start_time,
                        end_time,
                        payload,
                        proxy_row(kwargs, payload),
                    )
                )

        self.capture = Capture()

    def settings(self, entry: Entry) -> dict[str, Any]:
        return {
            key: self.local_openai if value == LOCAL_OPENAI else value
            for key, value in entry.deployment.items()
        }

    def route_to(self, entry: Entry, route: str) -> tuple[Any, str]:
        """The proxy's router for `route` (None without one) and the model name clients send."""
        if route != "router":
            return None, entry.model
        litellm = self.litellm
        group, deployed = f"interop-{entry.name}", entry.model
        if entry.wildcard:  # model_name and model both `<provider>/*`; clients name the model
            group = deployed = entry.model.split("/", 1)[0] + "/*"
        model_info = {"base_model": entry.base_model} if entry.base_model else {}
        router = litellm.Router(
            model_list=[{"model_name": group, "model_info": model_info,
                         "litellm_params": {"model": deployed, **self.settings(entry)}}],
            cache_responses=litellm.cache is not None,  # as the proxy builds its router
        )  # fmt: skip
        return router, entry.model if entry.wildcard else group

    async def send(self, entry: Entry, requested: str) -> None:
        if self.router is not None:  # route_request: the router, with the client's data
            data = await _proxy_data(entry, requested)
            response = await getattr(self.router, entry.call)(**data)
        else:  # no router: litellm itself, the server's settings added
            data = await _proxy_data(entry, requested)
            data.update(self.settings(entry))
            if entry.base_model:
                data["base_model"] = entry.base_model
            response = await getattr(self.litellm, entry.call)(**data)
        if entry.stream:
            async for _ in response:
                pass

    async def traffic(self, entry: Entry, route: str) -> Traffic:
        self.router, requested = self.route_to(entry, route)
        before = len(self.calls)
        for _ in range(2 if entry.cache_hit else 1):
            wanted = len(self.calls) + 1
            await self.send(entry, requested)
            for _ in range(500):  # success callbacks run as tasks once the response is out
                if len(self.calls) >= wanted:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"{entry.name} via {route}: no success callback within 5 s")
        await asyncio.sleep(0.05)  # and no second one
        return Traffic(entry, route, self.calls[before:])


def drive(entries: tuple[Entry, ...], local_openai: str) -> dict[tuple[str, str], Traffic]:
    """Send every entry over every route through real LiteLLM, offline; keyed (name, route)."""
    driver = _Driver(local_openai)
    # Its settings are module attributes that litellm's annotations do not declare.
    litellm: Any = driver.litellm
    saved = (list(litellm.callbacks), litellm.cache)
    litellm.callbacks = [driver.capture]  # ours only: importing the proxy adds a budget limiter
    traffic: dict[tuple[str, str], Traffic] = {}

    async def run_all() -> None:
        for entry in entries:
            for route in entry.routes:
                litellm.cache = litellm.Cache(type="local") if entry.cache_hit else None
                traffic[entry.name, route] = await driver.traffic(entry, route)

    try:
        asyncio.run(run_all())
    finally:
        litellm.callbacks, litellm.cache = saved
    return traffic


def lago_event(call: Call) -> dict[str, Any]:
    """The body LiteLLM's LagoLogger posts for `call` (LAGO_API_* must be set)."""
    from litellm.integrations.lago import LagoLogger

    event: dict[str, Any] = json.loads(
        json.dumps(LagoLogger()._common_logic(kwargs=call.kwargs, response_obj=call.response_obj))
    )["event"]
    return event


async def send_callback_events(calls: list[Call], set_clock: Callable[[dt.datetime], None]) -> None:
    """LiteLLM's real Lago callback for each call, Lago's clock at that call's reception."""
    from litellm.integrations.lago import LagoLogger

    logger = LagoLogger()
    for call in calls:
        set_clock(call.reception)
        await logger.async_log_success_event(
            call.kwargs, call.response_obj, call.start_time, call.end_time
        )


class _OpenAIHandler(BaseHTTPRequestHandler):
    """Answers `POST /v1/embeddings` as OpenAI does (usage has no completion tokens)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(str(text).split()) for text in inputs)
        answer = {
            "object": "list",
            "data": [{"object": "embedding", "index": index, "embedding": [0.25, -0.5, 0.125]}
                     for index, _ in enumerate(inputs)],
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }  # fmt: skip
        encoded = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def openai_server() -> Iterator[str]:
    """A local OpenAI-compatible server; yields its `api_base` (`http://127.0.0.1:PORT/v1`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
