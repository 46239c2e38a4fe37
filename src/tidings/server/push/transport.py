"""The HTTP client every network provider uses, and how transport failures map to results.

Guarantees: a network error, a timeout or a malformed response never raises out of a provider;
it becomes a retry (the network may recover) and is logged with the token's fingerprint, never
the token.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from tidings.server.push.provider import PushResult
from tidings.server.push.settings import ssl_context


def make_client(
    *,
    http2: bool,
    connect_timeout: float,
    request_timeout: float,
    ca_file: Path | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One pooled client per provider (HTTP/2 multiplexes every push over one connection)."""
    return httpx.AsyncClient(
        http2=http2,
        verify=ssl_context(ca_file),
        timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        follow_redirects=False,
        transport=transport,
        headers={"user-agent": "tidings-push/1"},
    )


def transport_failure(
    log: logging.Logger, what: str, fingerprint: str, exc: Exception
) -> PushResult:
    """Map an httpx error to a retry, logging its class (messages may embed URLs with tokens)."""
    log.warning("%s to %s failed: %s", what, fingerprint, type(exc).__name__)
    return PushResult.retry(f"transport: {type(exc).__name__}")
