"""The server registers exactly the REST route table of :mod:`tidings.protocol.routes`: a route
in the table without a handler, or a handler that is not in the table, fails here."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.routes import ASGIRoute, HTTPRoute, WebSocketRoute
from litestar.testing import TestClient

from tidings.protocol import routes
from tidings.server import ops
from tidings.server.app import create_app
from tidings.server.config import ServerConfig


@pytest.fixture
def app(tmp_path) -> Litestar:
    return create_app(ServerConfig(data_dir=tmp_path))


def registered(app: Litestar) -> dict[tuple[str, str], tuple[str | None, int]]:
    """(method, path) -> (handler name, status) of every REST handler the app serves, without
    the OPTIONS handlers the framework adds by itself."""
    found: dict[tuple[str, str], tuple[str | None, int]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if method == "OPTIONS" and handler.name is None:
                    continue
                assert (method, route.path) not in found, f"{method} {route.path} twice"
                found[(method, route.path)] = (handler.name, handler.status_code)
    return found


def test_rest_handlers_are_exactly_the_route_table(app):
    served = registered(app)
    table = {(r.method, r.path): r for r in routes.ROUTES}
    # Beside the table, exactly the operators' routes (tidings.server.ops): /metrics,
    # /v1/ready, /openapi.json and /docs; each is checked below.
    extras = set(served) - set(table)
    assert extras == ops.EXTRA_ROUTES, "handlers that are in neither protocol.routes nor ops"
    served = {key: value for key, value in served.items() if key not in ops.EXTRA_ROUTES}
    assert set(served) - set(table) == set(), "handlers that are not in protocol.routes"
    assert set(table) - set(served) == set(), "routes of protocol.routes without a handler"
    for key, route in table.items():
        assert served[key] == (route.name, route.status), route.name


def test_the_websocket_and_the_blob_endpoint_are_the_only_other_routes(app):
    websockets = [r.path for r in app.routes if isinstance(r, WebSocketRoute)]
    assert websockets == [routes.WEBSOCKET_PATH]
    # The local blob store's endpoint carries raw ciphertext authorised by presigned URLs, not
    # JSON with a device token, so it is not a protocol.routes.Route: a plain ASGI route at
    # BLOB_PATH, there only when the server keeps the blobs itself (the default).
    others = [r for r in app.routes if not isinstance(r, HTTPRoute | WebSocketRoute)]
    assert [(type(r), r.path) for r in others] == [(ASGIRoute, routes.BLOB_PATH)]


def test_with_blobs_in_s3_there_is_no_blob_endpoint(tmp_path):
    config = ServerConfig(data_dir=tmp_path, media_store="s3", media_s3_bucket="bucket")
    others = [r for r in create_app(config).routes if not isinstance(r, HTTPRoute | WebSocketRoute)]
    assert others == []


def _example_url(route: routes.Route) -> str:
    return route.url(
        **{name: 1 if f"{{{name}:int}}" in route.path else "x" for name in route.params}
    )


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: r.name)
def test_device_routes_and_only_those_want_a_device_token(app, route):
    with TestClient(app) as client:
        answer = client.request(route.method, _example_url(route))
    wants_token = answer.status_code == 401 and answer.json() == {
        "code": "unauthorized",
        "message": "missing or invalid device token",
    }
    assert wants_token == (route.auth == "device")
    if wants_token:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_the_operator_routes_need_no_device_token(app):
    with TestClient(app) as client:
        assert client.get("/v1/ready").json() == {"ready": True}
        assert client.get("/openapi.json").json()["openapi"] == "3.1.0"
        assert "Tidings REST API" in client.get("/docs").text
        # The test client is no loopback peer: /metrics is refused to it.
        assert client.get("/metrics").status_code == 403
