"""Lago's answers read for the client: successes, refusals, and errors that say what to fix."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from reconcile.errors import ConfigError, LagoError, LagoRejected

ALREADY_STORED = {"transaction_id": ["value_already_exist"]}


@dataclasses.dataclass
class SendReport:
    """What one `send_events` call did; events are named by (transaction_id, subscription)."""

    delivered: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    already_in_lago: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    requests: int = 0
    retries: int = 0

    @property
    def sent(self) -> int:
        """Events Lago accepted from this call."""
        return len(self.delivered)

    def add(self, other: SendReport) -> None:
        """Fold another report into this one."""
        self.delivered += other.delivered
        self.already_in_lago += other.already_in_lago
        self.requests += other.requests
        self.retries += other.retries


def event_name(event: Mapping[str, Any]) -> tuple[str, str]:
    """How reports name an event: (transaction_id, external_subscription_id)."""
    return (str(event.get("transaction_id")), str(event.get("external_subscription_id")))


def normalize_base_url(raw: str, *, setting: str = "LAGO_API_BASE") -> str:
    """LiteLLM's LAGO_API_BASE (the root, e.g. http://lago:3000) without a trailing slash."""
    value = raw.strip().rstrip("/") if raw else ""
    url = httpx.URL(value) if value else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"{setting}={raw!r} is not an http(s) URL: give Lago's API root, "
            "e.g. http://localhost:3000 or https://api.getlago.com"
        )
    if url.path.rstrip("/").endswith("/api/v1"):
        raise ConfigError(
            f"{setting} ends in /api/v1: give the root, e.g. {value.removesuffix('/api/v1')} "
            "(reconcile, like LiteLLM, adds /api/v1/events itself)"
        )
    return value


def raise_for_status(response: httpx.Response, base_url: str) -> None:
    """Turn every answer but a success or a 422 into an error that says what to fix."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status < 300 or status == 422:
        return
    if status in (401, 403):
        raise ConfigError(
            f"Lago at {base_url} refused the API key (HTTP {status}): check LAGO_API_KEY "
            "(Lago > Developers > API keys)"
        )
    if status == 404:
        raise ConfigError(
            f"{base_url} has no Lago events API (HTTP 404 on {where}): check LAGO_API_BASE, "
            "the root URL of Lago's API (e.g. http://localhost:3000)"
        )
    if status == 400:
        raise LagoRejected(
            f"Lago at {base_url} answered 400 Bad Request to {where} ({response.text[:200]}): "
            "is LAGO_API_BASE Lago's API?"
        )
    raise LagoError(f"Lago at {base_url} answered HTTP {status} to {where}: {response.text[:200]}")


def rejection(
    response: httpx.Response, batch: Sequence[Mapping[str, Any]], details: Mapping[str, Any]
) -> LagoRejected:
    reasons = [
        f"{batch[int(index)].get('transaction_id')}: {error}"
        for index, error in sorted(details.items(), key=lambda item: int(item[0]))
        if str(index).isdigit() and int(index) < len(batch)
    ]
    body = json_body(response) if not reasons else {}
    return LagoRejected(
        f"Lago refused {len(reasons) or len(batch)} event(s) (HTTP {response.status_code}): "
        + ("; ".join(reasons) if reasons else str(body.get("error_details", body)))
    )


def is_certificate_failure(error: BaseException) -> bool:
    """Whether a connection failed on certificate verification, which no retry can mend."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise LagoError(
            f"Lago answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}"
        ) from None
    return body if isinstance(body, dict) else {"body": body}
