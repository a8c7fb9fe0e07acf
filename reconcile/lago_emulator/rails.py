"""Lago's Rails layer as one pure function: routes, authentication, parameters, JSON bodies.

Copied from config/routes.rb, app/controllers/api/base_controller.rb (auth, 400 on a missing
parameter), api/v1/events_controller.rb (permitted keys) and Rails itself (JSON parameter
parsing, deep_munge, ActionDispatch::PublicExceptions for errors nothing rescues).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from reconcile.lago_emulator.billing import Billing, billing_route
from reconcile.lago_emulator.store import EventStore, Reply, event_param_refusal, not_found
from reconcile.lago_emulator.values import deep_munge

LAGO_VERSION = "v1.51.0"
HEALTH = Reply(
    200,
    {
        "version": LAGO_VERSION,
        "github_url": f"https://github.com/getlago/lago-api/tree/{LAGO_VERSION}",
        "message": "Success",
    },
)
UNAUTHORIZED = Reply(401, {"status": 401, "error": "Unauthorized"})
_JSON_TYPES = {"application/json", "text/x-json", "application/jsonrequest"}  # Mime[:json]
_EVENTS = "/api/v1/events"


@dataclasses.dataclass(frozen=True)
class Request:
    """An HTTP request as received; header names in lower case."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""


def answer(
    request: Request,
    store: EventStore,
    *,
    api_key: str,
    received: datetime,
    per_page_cap: int | None = None,
    billing: Billing | None = None,
) -> Reply:
    """What Lago answers to `request`, applying it to `store`; `received` stamps new events.

    Without `billing`, the subscription and invoice routes are unknown (the catch-all 404).
    """
    split = urlsplit(request.target)
    path = re.sub("/+", "/", split.path).rstrip("/") or "/"
    if (request.method, path) == ("GET", "/health"):
        return HEALTH
    action = _route(request.method, path)
    reading = billing_route(request.method, path) if billing else None
    if action is None and reading is None:
        return not_found("resource")  # the catch-all route, reached before any authentication
    if not _authenticated(request, api_key):
        return UNAUTHORIZED
    if billing and reading:
        return billing.answer(reading, split.query, per_page_cap=per_page_cap)
    if action in ("index", "show"):
        return _read(action == "index", path, split.query, store, per_page_cap)
    return _create(action, request, store, received)


def _read(listing: bool, path: str, query: str, store: EventStore, cap: int | None) -> Reply:
    """GET /events (`listing`) or /events/{transaction_id}."""
    if listing:
        params = dict(parse_qsl(query, keep_blank_values=True))  # Rack: the last one wins
        return store.list_events(params, per_page_cap=cap)
    return store.find(unquote(path.rsplit("/", 1)[1]))


def _authenticated(request: Request, api_key: str) -> bool:
    """Api::BaseController#authenticate: the second word of Authorization, whatever the scheme."""
    token = request.headers.get("authorization", "").split()[1:2]
    return bool(token) and hmac.compare_digest(token[0].encode(), api_key.encode())


def _create(action: str | None, request: Request, store: EventStore, received: datetime) -> Reply:
    """POST /events (action "create") or /events/batch ("batch"), from the JSON body."""
    params = _json_params(request.headers.get("content-type", ""), request.body)
    if params is None:  # ActionDispatch::Http::Parameters::ParseError
        return status_reply(400)
    if action == "batch":
        items = params.get("events")
        if isinstance(items, list):  # `permit(events: [...])` keeps the objects only
            items = [item for item in items if isinstance(item, dict)]
        return store.create_batch(items if isinstance(items, list) else None, received)
    event: Any = params.get("event")
    return event_param_refusal(event) or store.create(event, received)


def status_reply(status: int) -> Reply:
    """The body Rails' PublicExceptions renders for a status nothing else rendered."""
    return Reply(status, {"status": status, "error": HTTPStatus(status).phrase})


def _route(method: str, path: str) -> str | None:
    """The events action a request reaches (config/routes.rb); None: the catch-all 404."""
    if path == _EVENTS:
        return {"GET": "index", "POST": "create"}.get(method)
    tail = path.removeprefix(f"{_EVENTS}/")
    if tail == path or "/" in tail:
        return None
    if (method, tail) == ("POST", "batch"):
        return "batch"
    return "show" if method == "GET" else None


def _json_params(content_type: str, body: bytes) -> dict[str, Any] | None:
    """Rails' parameters from a JSON body, nils dropped from arrays (deep_munge).

    None when the JSON is malformed; other content types carry no body parameters here.
    """
    if content_type.split(";", maxsplit=1)[0].strip().lower() not in _JSON_TYPES or not body:
        return {}
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    data = deep_munge(data)
    return data if isinstance(data, dict) else {"_json": data}


def _reject_constant(name: str) -> Any:
    """Ruby's JSON parser refuses NaN and Infinity."""
    raise ValueError(name)
