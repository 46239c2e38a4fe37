"""Hardening of the REST surface and its neighbours, in-process: JSON content type on every
body route, integer bounds on every integer parameter, per-IP keys (IPv6 /64) and forwarded
headers only from configured proxies, and the data directory's permissions."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from litestar.testing import TestClient

from tidings.protocol import ErrorCode, routes
from tidings.protocol.frames import MAX_INT64
from tidings.server.app import create_app
from tidings.server.config import ConfigError, ServerConfig
from tidings.server.forwarded import ForwardedHeaders, TrustedProxies, forwarded_client
from tidings.server.main import prepare_data_dir, warn_if_open
from tidings.server.ratelimit import RateLimiter, client_key

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def client(tmp_path):
    config = ServerConfig(data_dir=tmp_path, accounts_per_minute=1000)
    with TestClient(create_app(config)) as client:
        yield client


def _account(client: TestClient, username: str) -> dict[str, str]:
    created = client.post("/v1/accounts", json={"username": username})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def _is_api_error(answer, status: int) -> bool:
    body = answer.json()
    return answer.status_code == status and set(body) == {"code", "message"}


# --------------------------------------------------------------------------- 4. content type

JSON_ROUTES = [route for route in routes.ROUTES if route.request is not None]


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_every_json_route_refuses_another_content_type_with_415(client, route, content_type):
    headers = _account(client, "alice")
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {name: 1 if f"{{{name}:int}}" in route.path else "x" for name in route.params}
    answer = client.request(route.method, route.url(**params), content=b"{}", headers=headers)
    assert _is_api_error(answer, 415)
    assert answer.json()["code"] == ErrorCode.BAD_FRAME
    assert "application/json" in answer.json()["message"]


def test_a_cross_origin_text_plain_post_creates_no_account(client):
    answer = client.post(
        "/v1/accounts",
        content=b'{"username": "mallory"}',
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert answer.status_code == 415
    headers = _account(client, "alice")
    assert client.get("/v1/users/mallory", headers=headers).status_code == 404


def test_json_with_a_charset_is_json(client):
    answer = client.post(
        "/v1/accounts",
        content=b'{"username": "alice"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert answer.status_code == 201


# --------------------------------------------------------------------------- 5. integer bounds

OUT_OF_RANGE = [str(2**63), str(2**64), "-1", "9" * 5000, str(MAX_INT64 + 1)]
#: (route, which parameter, where) of every integer parameter of the route table
INT_PARAMS = [
    (routes.MESSAGES, "after", "query"),
    (routes.MESSAGES, "limit", "query"),
    (routes.BUNDLES, "device", "query"),
    (routes.REMOVE_DEVICE, "device_id", "path"),
    (routes.CHANNEL_POSTS, "after", "query"),
    (routes.CHANNEL_POSTS, "before", "query"),
    (routes.CHANNEL_POSTS, "limit", "query"),
    (routes.CHANNEL_SUBSCRIBERS, "limit", "query"),
]
#: query parameters of the table that are not integers (a paging token)
STRING_QUERIES = {(routes.CHANNEL_SUBSCRIBERS.name, "start")}


def test_the_table_has_no_other_integer_parameters():
    in_paths = {
        (route.name, name)
        for route in routes.ROUTES
        for name in route.params
        if f"{{{name}:int}}" in route.path
    }
    covered = {(route.name, name) for route, name, _ in INT_PARAMS}
    # Query parameters are named in the table; every one that is an integer is covered here.
    queries = {(route.name, name) for route in routes.ROUTES for name in route.query}
    assert in_paths | (queries - STRING_QUERIES) == covered


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=lambda v: v[:8])
@pytest.mark.parametrize("param", INT_PARAMS, ids=lambda p: f"{p[0].name}.{p[1]}")
def test_integer_parameters_out_of_range_are_typed_4xx_never_500(client, param, value):
    route, name, where = param
    headers = _account(client, "alice")
    _account(client, "bob")
    conv = client.post("/v1/conversations/direct", json={"username": "bob"}, headers=headers)
    fill = {"conv": conv.json()["id"], "account_id": "a0", "device_id": 1, "channel": "hnone"}
    params = {p: fill[p] for p in route.params}
    if where == "path":
        params[name] = value
        answer = client.request(route.method, route.url(**params), headers=headers)
    else:
        url = route.url(**params)
        answer = client.request(route.method, url, params={name: value}, headers=headers)
    if (where == "path" and not value.lstrip("-").isdigit()) or len(value) > 4000:
        # Not a decimal integer a route can hold: a typed 400, or no such route (404).
        assert answer.status_code in (400, 404) and _is_api_error(answer, answer.status_code)
    else:
        assert _is_api_error(answer, 400), answer.text
        assert answer.json()["code"] == ErrorCode.BAD_FRAME


def test_the_largest_int64_after_is_fine(client):
    headers = _account(client, "alice")
    _account(client, "bob")
    conv = client.post("/v1/conversations/direct", json={"username": "bob"}, headers=headers)
    url = routes.MESSAGES.url(conv=conv.json()["id"])
    answer = client.get(url, params={"after": MAX_INT64}, headers=headers)
    assert answer.status_code == 200 and answer.json()["envelopes"] == []
    answer = client.delete(routes.REMOVE_DEVICE.url(device_id=2**31 - 1), headers=headers)
    assert answer.status_code == 404  # in range, just not a device of the account


# --------------------------------------------------------------------------- 2. per-IP keys


def test_ipv4_keys_on_the_address_and_ipv6_on_the_64():
    assert client_key("192.0.2.7") == "192.0.2.7"
    same = {client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff::9")}
    assert same == {"2001:db8:1:2::/64"}
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("testclient") == "testclient"


def test_two_addresses_in_one_64_share_a_bucket():
    limiter = RateLimiter(2, clock=lambda: 0.0)
    assert limiter.allow(client_key("2001:db8::1"))
    assert limiter.allow(client_key("2001:db8::2"))
    assert not limiter.allow(client_key("2001:db8::ffff:3"))
    assert limiter.allow(client_key("2001:db8:0:1::1"))
    assert limiter.available(client_key("2001:db8::9")) == 0


def _headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_forwarded_client_walks_from_the_right_past_trusted_proxies():
    trusted = TrustedProxies("10.0.0.0/8, 127.0.0.1")
    xff = _headers(x_forwarded_for="203.0.113.9, 198.51.100.2, 10.1.2.3")
    assert forwarded_client(xff, trusted, "x-forwarded-for") == "198.51.100.2"
    fwd = _headers(forwarded='for=203.0.113.9;proto=https, for="[2001:db8::5]:443"')
    assert forwarded_client(fwd, trusted, "forwarded") == "2001:db8::5"
    # Only the configured header counts: the other one may be the client's forgery.
    assert forwarded_client(fwd, trusted, "x-forwarded-for") is None
    assert forwarded_client(_headers(x_forwarded_for="junk"), trusted, "x-forwarded-for") is None
    assert forwarded_client(_headers(x_forwarded_for="10.0.0.1"), trusted, "x-forwarded-for") == (
        "10.0.0.1"
    )


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_forwarded_headers_count_only_from_a_configured_proxy(kind):
    seen: list[object] = []

    async def app(scope, receive, send):
        seen.append(scope["client"])

    headers = _headers(x_forwarded_for="203.0.113.9")
    middleware = ForwardedHeaders(app, TrustedProxies("10.0.0.1"))
    for peer in (("192.0.2.1", 5000), ("10.0.0.1", 5000)):
        await middleware({"type": kind, "client": peer, "headers": headers}, None, None)
    assert seen == [("192.0.2.1", 5000), ("203.0.113.9", 0)]
    assert not TrustedProxies("")
    with pytest.raises(ValueError, match="not an IP"):
        TrustedProxies("proxy.example")


def test_forwarded_settings_are_validated():
    assert ServerConfig().forwarded_allow_ips == ""  # by default no header is believed
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        ServerConfig.load({"forwarded_allow_ips": "nope"}, env={})
    with pytest.raises(ConfigError, match="forwarded_header"):
        ServerConfig.load({"forwarded_header": "x-real-ip"}, env={})
    loaded = ServerConfig.load(
        env={"TIDINGS_FORWARDED_ALLOW_IPS": "10.0.0.0/8", "TIDINGS_FORWARDED_HEADER": "Forwarded"}
    )
    assert (loaded.forwarded_allow_ips, loaded.forwarded_header) == ("10.0.0.0/8", "forwarded")


def test_rest_limits_count_the_forwarded_client_from_a_trusted_proxy(tmp_path):
    # The test client's peer is "testclient": trust "*" to see the header honoured end to end.
    config = ServerConfig(data_dir=tmp_path, accounts_per_minute=1)
    app = ForwardedHeaders(create_app(config), TrustedProxies("*"))
    with TestClient(app) as client:

        def sign_up(name: str, ip: str) -> int:
            headers = {"X-Forwarded-For": ip}
            return client.post("/v1/accounts", json={"username": name}, headers=headers).status_code

        assert sign_up("alice", "2001:db8::1") == 201
        assert sign_up("bob", "2001:db8::2") == 429  # the same /64
        assert sign_up("carol", "2001:db8:0:1::1") == 201


# --------------------------------------------------------------------------- 6. permissions


def test_the_data_dir_and_database_are_private(tmp_path, caplog):
    config = ServerConfig(data_dir=tmp_path / "fresh" / "data")
    with caplog.at_level(logging.WARNING):
        prepare_data_dir(config)
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.database_path.stat().st_mode) == 0o600
    assert "others may read" not in caplog.text


def test_wider_permissions_are_warned_about(tmp_path, caplog):
    config = ServerConfig(data_dir=tmp_path / "data")
    config.data_dir.mkdir()
    os.chmod(config.data_dir, 0o755)
    config.database_path.touch()
    os.chmod(config.database_path, 0o644)
    wal = config.database_path.with_name(config.database_path.name + "-wal")
    wal.touch()
    os.chmod(wal, 0o640)
    with caplog.at_level(logging.WARNING):
        prepare_data_dir(config)
    assert set(warn_if_open(config)) == {config.data_dir, config.database_path, wal}
    assert caplog.text.count("others may read the server's data") >= 3
    assert "chmod 700" in caplog.text and "chmod 600" in caplog.text
