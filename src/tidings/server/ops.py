"""Routes for operators, beside the REST table: ``GET /metrics`` (Prometheus text format),
``GET /v1/ready`` (readiness), ``GET /openapi.json`` and ``GET /docs`` (the REST API's
description). ``GET /v1/health`` (liveness: the process answers) is in the table itself.

``/metrics`` on the main port answers only loopback peers and those in ``metrics_allow_ips``
(403 for anybody else, so a server on the internet does not publish its numbers); with
``metrics_listen`` set it is served on that address instead (:func:`metrics_app`) and the main
port answers 404.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidings.server import openapi
from tidings.server.forwarded import TrustedProxies, parse_ip
from tidings.server.metrics import Metrics

#: (method, path) of every route this module adds; tests/unit/server/test_routes.py allows
#: exactly these beside the REST table.
EXTRA_ROUTES = frozenset(
    {
        ("GET", "/metrics"),
        ("GET", "/v1/ready"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    }
)
#: Seconds the readiness probe waits for the store's writer.
READY_TIMEOUT = 2.0


def loopback_or(allowed: TrustedProxies, host: str | None) -> bool:
    address = parse_ip(host or "")
    if address is None:
        return False
    return address.is_loopback or (bool(allowed) and str(address) in allowed)


async def metrics_text(metrics: Metrics, pending: Callable[[], Awaitable[int]]) -> bytes:
    with contextlib.suppress(Exception):  # the store is closed: the gauge keeps its value
        metrics.pending.set(await pending())
    return generate_latest(metrics.registry)


def handlers(
    metrics: Metrics,
    pending: Callable[[], Awaitable[int]],
    ready: Callable[[float], Awaitable[bool]],
    metrics_allow_ips: str,
    metrics_here: bool,
) -> list[HTTPRouteHandler]:
    allowed = TrustedProxies(metrics_allow_ips)

    @get("/metrics", name="metrics", include_in_schema=False)
    async def metrics_route(request: Request[object, object, State]) -> Response[bytes]:
        if not metrics_here:
            return Response(b"metrics are served on metrics_listen\n", status_code=404)
        host = request.client.host if request.client else None
        if not loopback_or(allowed, host):
            return Response(b"forbidden\n", status_code=403, media_type="text/plain")
        body = await metrics_text(metrics, pending)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @get("/v1/ready", name="ready", include_in_schema=False)
    async def ready_route() -> Response[bytes]:
        if await ready(READY_TIMEOUT):
            return Response(b'{"ready":true}', media_type="application/json")
        return Response(b'{"ready":false}', status_code=503, media_type="application/json")

    @get("/openapi.json", name="openapi", include_in_schema=False)
    async def openapi_route() -> Response[bytes]:
        return Response(openapi.document_json(), media_type="application/json")

    @get("/docs", name="docs", include_in_schema=False)
    async def docs_route() -> Response[str]:
        return Response(openapi.docs_html(), media_type="text/html")

    return [metrics_route, ready_route, openapi_route, docs_route]


def metrics_app(metrics: Metrics, pending: Callable[[], Awaitable[int]]) -> Any:
    """A bare ASGI app for the ``metrics_listen`` address: ``GET /metrics`` and nothing else."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, body, kind = 200, await metrics_text(metrics, pending), CONTENT_TYPE_LATEST
        else:
            status, body, kind = 404, b"not found\n", "text/plain"
        headers = [(b"content-type", kind.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def parse_listen(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)
