"""Wire-level rules that live in tidings.protocol: bounds, the route table, close codes, digest."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from tidings.protocol import (
    Ack,
    Fetch,
    Hello,
    Send,
    close,
    decode_client_frame,
    digest,
    encode,
    routes,
)
from tidings.protocol.frames import MAX_INT64, MAX_ITEMS


@pytest.mark.parametrize(
    "frame",
    [
        {"t": "fetch", "conv": "c", "after": MAX_INT64 + 1},
        {"t": "ack", "upto": {"c": 2**64 - 1}},
        {"t": "ack", "device_upto": MAX_INT64 + 1},
        {"t": "read", "conv": "c", "seq": -1},
        {"t": "hello", "cursors": {"c": MAX_INT64 + 1}},
        {"t": "hello", "version": 2**40},
        {"t": "ping", "n": 2**40},
        {"t": "hello", "cursors": {f"c{i}": 1 for i in range(MAX_ITEMS + 1)}},
    ],
)
def test_out_of_range_integers_and_oversized_maps_are_refused_by_the_schema(
    frame: dict[str, object],
) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_client_frame(msgspec.msgpack.encode(frame))


def test_the_largest_storable_values_pass() -> None:
    fetch = decode_client_frame(encode(Fetch(conv="c", after=MAX_INT64)))
    assert isinstance(fetch, Fetch) and fetch.after == MAX_INT64
    ack = decode_client_frame(encode(Ack(upto={"c": MAX_INT64}, device_upto=MAX_INT64)))
    assert isinstance(ack, Ack)
    hello = decode_client_frame(encode(Hello(cursors={f"c{i}": 1 for i in range(MAX_ITEMS)})))
    assert isinstance(hello, Hello)
    send = Send(id=uuid.uuid4(), conv="c", payload=b"x")
    assert decode_client_frame(encode(send)) == send


def test_routes_fill_and_escape_their_placeholders() -> None:
    assert routes.MESSAGES.url(conv="c1") == "/v1/conversations/c1/messages"
    assert routes.REMOVE_MEMBER.url(conv="g/1", username="a b") == "/v1/groups/g%2F1/members/a%20b"
    assert routes.REMOVE_DEVICE.url(device_id=7) == "/v1/devices/7"
    assert routes.REMOVE_MEMBER.params == ("conv", "username")
    with pytest.raises(TypeError):
        routes.CONVERSATION.url()
    with pytest.raises(TypeError):
        routes.ME.url(conv="x")


def test_the_route_table_has_one_entry_per_method_and_path() -> None:
    pairs = [(r.method, r.path) for r in routes.ROUTES]
    assert len(pairs) == len(set(pairs))
    assert len(routes.BY_NAME) == len(routes.ROUTES)
    assert all(r.path.startswith("/v1/") for r in routes.ROUTES)
    assert all((r.status == 204) == (r.response is None) for r in routes.ROUTES)


def test_fatal_close_codes() -> None:
    assert close.is_fatal(close.CloseCode.UNAUTHORIZED)
    assert close.is_fatal(4409) and close.is_fatal(4426)
    for code in (1000, 1001, 1006, 1011, 1013, 4408, None):
        assert not close.is_fatal(code)
    assert set(close.FATAL_REASONS) == set(close.FATAL_CLOSE_CODES)


def test_the_devices_digest_ignores_order() -> None:
    a = digest.devices_digest(["b.1", "a.2", "a.1"])
    assert a == digest.devices_digest(["a.1", "a.2", "b.1"])
    assert len(a) == digest.DIGEST_BYTES
    assert a != digest.devices_digest(["a.1", "a.2"])
