"""The ASGI app in-process (Litestar's test client): wiring, error shapes, 4401 fallback."""

from __future__ import annotations

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from tidings.protocol import Hello, Synced, Welcome, decode_server_frame, encode
from tidings.protocol.routes import WEBSOCKET_PATH
from tidings.server.app import create_app
from tidings.server.config import ServerConfig
from tidings.server.ws import WebSocketFirst


@pytest.fixture
def client(tmp_path):
    app = create_app(ServerConfig(data_dir=tmp_path, idle_timeout=5.0))
    with TestClient(app) as client:
        yield client


def test_rest_and_websocket_wiring(client):
    assert client.get("/v1/health").json()["ok"] is True
    created = client.post("/v1/accounts", json={"username": "alice"})
    assert created.status_code == 201
    token = created.json()["token"]
    with client.websocket_connect("/v1/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send_bytes(encode(Hello()))
        assert isinstance(decode_server_frame(ws.receive_bytes()), Welcome)
        assert isinstance(decode_server_frame(ws.receive_bytes()), Synced)


def test_websocket_without_http_response_extension_closes_4401(client):
    # Litestar's test client offers no websocket.http.response: the fallback is a 4401 close.
    headers = {"Authorization": "Bearer x.y"}
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/ws", headers=headers) as ws,
    ):
        ws.receive_bytes()
    assert closed.value.code == 4401


def test_unknown_route_and_bad_query_have_api_error_shape(client):
    r = client.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.get("/v1/me")
    assert r.status_code == 401 and set(r.json()) == {"code", "message"}


async def test_websocket_first_sends_only_the_device_websocket_to_the_gateway():
    seen: list[tuple[str, str]] = []

    def recorder(name: str):
        async def app(scope, receive, send):
            seen.append((name, f"{scope['type']} {scope.get('path', '')}"))

        return app

    first = WebSocketFirst(recorder("app"), recorder("gateway"))
    for scope in (
        {"type": "websocket", "path": WEBSOCKET_PATH},
        {"type": "websocket", "path": "/v1/elsewhere"},
        {"type": "http", "path": WEBSOCKET_PATH},
        {"type": "lifespan"},
    ):
        await first(scope, None, None)
    assert seen == [
        ("gateway", f"websocket {WEBSOCKET_PATH}"),
        ("app", "websocket /v1/elsewhere"),
        ("app", f"http {WEBSOCKET_PATH}"),
        ("app", "lifespan "),
    ]
