"""Lago's answers read for the client: successes, refusals, and errors that say what to fix."""

from __future__ import annotations

import dataclasses
import socket
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
    try:
        url = httpx.URL(value) if value else None
    except httpx.InvalidURL as error:
        # Unparsable user info (a '/' in a password) defeats masking, and httpx's reason may
        # quote a piece of it: a URL with user info is not shown at all.
        shown = "" if "@" in value else f"={value!r} ({error})"
        raise ConfigError(
            f"{setting}{shown} is not a valid URL: give Lago's API root, e.g. "
            "http://localhost:3000, with any reserved character in credentials percent-encoded"
        ) from None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"{setting}={hide_password(raw)!r} is not an http(s) URL: give Lago's API root, "
            "e.g. http://localhost:3000 or https://api.getlago.com"
        )
    if url.path.rstrip("/").endswith("/api/v1"):
        raise ConfigError(
            f"{setting} ends in /api/v1: give the root, e.g. "
            f"{hide_password(value.removesuffix('/api/v1'))} "
            "(reconcile, like LiteLLM, adds /api/v1/events itself)"
        )
    return value


def raise_for_status(response: httpx.Response, base_url: str) -> None:
    """Turn every answer but a success or a 422 into an error that says what to fix."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status < 300 or status == 422:
        return
    if status in (401, 403) and response.request.url.username:
        raise ConfigError(
            f"Lago at {base_url} refused the request (HTTP {status}): LAGO_API_BASE carries "
            "credentials, sent as HTTP Basic auth in place of LAGO_API_KEY's Bearer token; "
            "remove them from LAGO_API_BASE unless a gateway in front of Lago expects them"
        )
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


def hide_password(url: str) -> str:
    """`url` with the secret of its user info masked: `user:***@`, or `***@` for a token alone.

    LAGO_API_BASE may carry credentials for a gateway in front of Lago, a user and password
    (`https://user:pass@lago.example.com`) or a token alone (`https://token@lago.example.com`,
    sent as Basic auth with an empty password): every message, log and ledger row shows it
    masked. A user name is kept where a password follows it, as Database URLs show it.
    """
    scheme, separator, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not separator or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{f'{user}:***' if colon else '***'}@{host}{slash}{tail}"


def configuration_problem(error: BaseException, base_url: str) -> ConfigError | None:
    """The ConfigError a failed connection means, when no retry can mend it; else None.

    A host name that does not exist (not a DNS server that did not answer: that may pass), a
    certificate that fails verification, and a TLS handshake with something that does not
    speak TLS (`https://` to a plain-http port) are all fixed in LAGO_API_BASE or the trust
    store, not by waiting. `base_url` must be masked already.
    """
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigError(
                f"the TLS certificate of {base_url} failed verification ({cause.verify_message}):"
                " check LAGO_API_BASE's host name, fix the server's certificate, or trust its CA"
                " (SSL_CERT_FILE)"
            )
        if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_NAME:
            host = httpx.URL(base_url).host
            return ConfigError(
                f"LAGO_API_BASE={base_url}: the host name {host!r} does not resolve "
                f"({cause.strerror}): fix the host name in LAGO_API_BASE"
            )
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, _TLS_TRANSIENT):
            return ConfigError(
                f"LAGO_API_BASE={base_url}: the TLS handshake failed ({cause.reason or cause}): "
                "the server does not speak TLS on that port; use http:// if it serves plain "
                "HTTP, or the port that serves HTTPS"
            )
    return None


#: getaddrinfo's "no such name" answers; EAI_AGAIN (a resolver that did not answer) is retried.
_NO_SUCH_NAME = {
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
}  # fmt: skip
#: A connection cut during the handshake: a server or a proxy in trouble, worth another try.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise LagoError(
            f"Lago answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}"
        ) from None
    return body if isinstance(body, dict) else {"body": body}
