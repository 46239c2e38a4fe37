"""Fuzzing a real server process (docs/architecture.md, section 5: bad input).

Hypothesis builds WebSocket frames and REST requests from the protocol's own msgspec types
(:func:`values_of` walks ``msgspec.inspect.type_info``: every integer, length and pattern bound
is tried at, just inside and just outside its limit), then mutates them: bit flips, truncation,
wrong types, missing and extra fields, nesting thousands of levels deep, length headers that
claim gigabytes, random bytes, text frames, wrong content types and methods. Every example goes
to one real ``python -m tidings.server`` over a real socket.

What must hold:

- no HTTP 5xx and never the ``internal`` error code, on the socket or over REST;
- a frame that can be answered with an error leaves the connection open: after it a Ping gets
  its Pong (the only frames allowed to end a connection are a text frame that is not UTF-8,
  which RFC 6455 requires failing with 1007, and a Hello with another protocol version, 4426);
- at the end a fresh pair of clients still talks: a message sent by one reaches the other.

Examples are derandomized and bounded (``max_examples``), so CI runs the same cases each time,
in well under a minute.
"""

from __future__ import annotations

import base64
import contextlib
import os
import string
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tidings.protocol import (
    MAX_FRAME_BYTES,
    ClientFrame,
    Envelope,
    Error,
    Hello,
    Ping,
    Pong,
    Send,
    ServerFrame,
    Synced,
    Welcome,
    decode_server_frame,
    encode,
)
from tidings.protocol.frames import MAX_INT64
from tidings.protocol.keys import KeyUpload, KyberPreKey, OneTimePreKey, SignedPreKey
from tidings.protocol.routes import ROUTES, Route

#: The same examples on every run; enough to reach every frame type and route many times.
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
WS_EXAMPLES = 1500
PRE_HELLO_EXAMPLES = 200
REST_EXAMPLES = 2000
UTF8_EXAMPLES = 30
#: Seconds to wait for any one answer of the server.
WAIT = 10.0

Value = Any


# --------------------------------------------------------------------------- values of a type


def _ints(lo: int | None, hi: int | None, *, wire: str) -> st.SearchStrategy[int]:
    """Integers at, inside and outside the bounds, and the 64-bit edges."""
    floor, ceiling = (-(2**63), 2**64 - 1) if wire == "msgpack" else (-(10**30), 10**30)
    edges = {0, 1, -1, 2**31 - 1, 2**31, MAX_INT64, MAX_INT64 + 1, 2**64 - 1, -(2**63)}
    for bound in (lo, hi):
        if bound is not None:
            edges |= {bound - 1, bound, bound + 1}
    if wire == "json":
        edges |= {10**30, -(10**30)}
    inside = st.integers(
        lo if lo is not None else -1000, hi if hi is not None and hi < 2**40 else 2**40
    )
    picked = sorted(e for e in edges if floor <= e <= ceiling)
    return st.one_of(st.sampled_from(picked), inside)


def _lengths(lo: int | None, hi: int | None) -> list[int]:
    sizes = {0, 1, 8}
    for bound in (lo, hi):
        if bound is not None:
            sizes |= {max(0, bound - 1), bound, bound + 1}
    return sorted(s for s in sizes if s <= MAX_FRAME_BYTES)


def _texts(lo: int | None, hi: int | None, pattern: str | None) -> st.SearchStrategy[str]:
    options: list[st.SearchStrategy[str]] = [
        st.text(max_size=20),
        st.sampled_from(["", ":", "a:0", "a:1", "../..", "\x00", "🙂" * 17, "é" * 33]),
        st.sampled_from(_lengths(lo, hi)).map(lambda n: "x" * n),
    ]
    if pattern:
        options.append(st.from_regex(pattern, fullmatch=True))
    return st.one_of(options)


def _bytes(lo: int | None, hi: int | None) -> st.SearchStrategy[bytes]:
    typed = st.sampled_from(_lengths(lo, hi)).flatmap(
        lambda n: st.sampled_from([b"\x05", b"\x08", b"\x00"]).map(lambda p: (p * n)[:n])
    )
    return st.one_of(st.binary(max_size=40), typed)


def values_of(info: msgspec.inspect.Type, wire: str, depth: int = 0) -> st.SearchStrategy[Value]:
    """Python values for a msgspec type, valid and just invalid, to encode as ``wire``."""
    t = msgspec.inspect
    if isinstance(info, t.IntType):
        return _ints(info.ge if info.ge is not None else info.gt, info.le or info.lt, wire=wire)
    if isinstance(info, t.FloatType):
        return st.floats(allow_nan=wire == "msgpack")
    if isinstance(info, t.BoolType):
        return st.booleans()
    if isinstance(info, t.NoneType):
        return st.none()
    if isinstance(info, t.StrType):
        return _texts(info.min_length, info.max_length, info.pattern)
    if isinstance(info, t.BytesType):
        return _bytes(info.min_length, info.max_length)
    if isinstance(info, t.UUIDType):
        return st.uuids().map(str) | st.sampled_from(["", "not-a-uuid", "0" * 32])
    if isinstance(info, t.LiteralType):
        return st.sampled_from(list(info.values))
    if isinstance(info, t.ListType | t.SetType | t.VarTupleType | t.FrozenSetType):
        return st.lists(values_of(info.item_type, wire, depth + 1), max_size=3 if depth < 3 else 1)
    if isinstance(info, t.DictType):
        keys = values_of(info.key_type, wire, depth + 1).filter(
            lambda k: isinstance(k, str | int | bytes) and not isinstance(k, bool)
        )
        return st.dictionaries(keys, values_of(info.value_type, wire, depth + 1), max_size=3)
    if isinstance(info, t.UnionType):
        return st.one_of([values_of(x, wire, depth) for x in info.types])
    if isinstance(info, t.StructType):
        required = {
            f.encode_name: values_of(f.type, wire, depth + 1) for f in info.fields if f.required
        }
        optional = {
            f.encode_name: values_of(f.type, wire, depth + 1) for f in info.fields if not f.required
        }
        if info.tag_field is not None:
            required[info.tag_field] = st.just(info.tag)
        return st.fixed_dictionaries(required, optional=optional)
    return anything(wire)


def anything(wire: str) -> st.SearchStrategy[Value]:
    """Any value the wire can carry."""
    leaves: st.SearchStrategy[Value] = st.one_of(
        st.none(),
        st.booleans(),
        _ints(None, None, wire=wire),
        st.floats(allow_nan=False),
        st.text(max_size=10),
    )
    if wire == "msgpack":
        leaves = leaves | st.binary(max_size=10)
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )


# --------------------------------------------------------------------------- mutations


def _encoder(wire: str) -> Callable[[Value], bytes]:
    return msgspec.msgpack.encode if wire == "msgpack" else msgspec.json.encode


def _deep(n: int, wire: str) -> bytes:
    return b"\x91" * n + b"\xc0" if wire == "msgpack" else b"[" * n + b"]" * n


#: values whose header claims more than the data holds: array, map, bin, str of 4 GiB
HUGE_MSGPACK = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                b"\xdb\xff\xff\xff\xff\x00", b"\xdc\xff\xff"]  # fmt: skip


def _with_raw_field(value: dict[str, Value], name: str, raw: bytes, wire: str) -> bytes:
    """``value`` encoded with one more field whose encoding is ``raw`` as it is."""
    encode_ = _encoder(wire)
    parts = [encode_(k) + (b":" if wire == "json" else b"") + encode_(v) for k, v in value.items()]
    parts.append(encode_(name) + (b":" if wire == "json" else b"") + raw)
    if wire == "json":
        return b"{" + b",".join(parts) + b"}"
    count = len(parts)
    header = bytes([0x80 | count]) if count < 16 else b"\xde" + count.to_bytes(2, "big")
    return header + b"".join(parts)


MUTATIONS = ["as_is", "flip", "truncate", "wrong_type", "drop", "extra", "deep", "huge",
             "random", "not_a_map", "trailing"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Value], wire: str) -> bytes:
    """A value of ``base``, encoded, then damaged in one of many ways."""
    value = draw(base)
    encode_ = _encoder(wire)
    kind = draw(st.sampled_from(MUTATIONS))
    is_map = isinstance(value, dict) and value
    if kind in ("wrong_type", "drop", "extra", "deep", "huge") and not is_map:
        kind = "flip"
    if kind == "wrong_type":
        name = draw(st.sampled_from(sorted(value)))
        value = {**value, name: draw(anything(wire))}
    elif kind == "drop":
        name = draw(st.sampled_from(sorted(value)))
        value = {k: v for k, v in value.items() if k != name}
    elif kind == "extra":
        value = {**value, draw(st.text(min_size=1, max_size=8)): draw(anything(wire))}
    elif kind == "deep":
        name = draw(st.sampled_from([*sorted(value), "zz"]))
        rest = {k: v for k, v in value.items() if k != name}
        return _with_raw_field(
            rest, name, _deep(draw(st.sampled_from([50, 1200, 20_000])), wire), wire
        )
    elif kind == "huge":
        name = draw(st.sampled_from([*sorted(value), "zz"]))
        rest = {k: v for k, v in value.items() if k != name}
        raw = draw(st.sampled_from(HUGE_MSGPACK)) if wire == "msgpack" else b"9" * 5000
        return _with_raw_field(rest, name, raw, wire)
    elif kind == "random":
        return draw(st.binary(max_size=64))
    elif kind == "not_a_map":
        return encode_(draw(anything(wire)))
    data = encode_(value)
    if kind == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        bit = draw(st.integers(0, 7))
        data = data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]
    elif kind == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "trailing":
        data += draw(st.binary(min_size=1, max_size=8))
    return data


# --------------------------------------------------------------------------- a device's socket


class Device:
    """One raw, synchronous WebSocket connection of one device."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.ws = self._connect()
        self._n = 1000

    def _connect(self) -> ClientConnection:
        return connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None,
            max_size=None,
            open_timeout=WAIT,
            close_timeout=1,
            legacy=True,
        )

    def reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.ws = self._connect()

    def recv(self) -> ServerFrame:
        data = self.ws.recv(timeout=WAIT)
        assert isinstance(data, bytes), f"text frame from the server: {data!r}"
        frame = decode_server_frame(data)
        if isinstance(frame, Error):
            assert frame.code != "internal", frame
        return frame

    def hello(self) -> Welcome:
        self.ws.send(encode(Hello()))
        welcome: Welcome | None = None
        while True:
            frame = self.recv()
            if isinstance(frame, Welcome):
                welcome = frame
            if isinstance(frame, Synced):
                assert welcome is not None
                return welcome

    def ping(self) -> list[ServerFrame]:
        """A Ping round trip; returns the frames that came before the Pong."""
        self._n += 1
        self.ws.send(encode(Ping(n=self._n)))
        seen: list[ServerFrame] = []
        while True:
            frame = self.recv()
            if isinstance(frame, Pong) and frame.n == self._n:
                return seen
            seen.append(frame)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


@contextlib.contextmanager
def rest(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        yield http


def new_account(http: httpx.Client, prefix: str) -> dict[str, Any]:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    r = http.post(
        "/v1/accounts",
        content=msgspec.json.encode({"username": name}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def auth(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}", "content-type": "application/json"}


def open_direct(http: httpx.Client, a: dict[str, Any], b: dict[str, Any]) -> str:
    r = http.post(
        "/v1/conversations/direct",
        content=msgspec.json.encode({"username": b["username"]}),
        headers=auth(a),
    )
    assert r.status_code in (200, 201), r.text
    conv: str = r.json()["id"]
    return conv


def upload_keys(http: httpx.Client, account: dict[str, Any]) -> None:
    """Keys make a device part of its account's device list (docs/e2ee.md)."""

    def curve() -> bytes:
        return b"\x05" + os.urandom(32)

    upload = KeyUpload(
        identity_key=curve(),
        registration_id=7,
        signed_prekey=SignedPreKey(1, curve(), os.urandom(64)),
        kyber_last_resort=KyberPreKey(9, b"\x08" + os.urandom(1568), os.urandom(64)),
        prekeys=[OneTimePreKey(1, curve())],
    )
    r = http.put("/v1/keys", content=msgspec.json.encode(upload), headers=auth(account))
    assert r.status_code == 200, r.text


def assert_pair_still_talks(server: Any) -> None:
    """A fresh pair: one sends with E2EE-shaped payloads, the other receives it."""
    with rest(server) as http:
        carol, dave = new_account(http, "carol"), new_account(http, "dave")
        conv = open_direct(http, carol, dave)
        upload_keys(http, carol)
        upload_keys(http, dave)
    sender, receiver = Device(server.ws_url, carol["token"]), Device(server.ws_url, dave["token"])
    try:
        sender.hello()
        receiver.hello()
        message_id = uuid.uuid4()
        payload = b"still talking " + os.urandom(8)
        dave_addr = f"{dave['account_id']}:{dave['device_id']}"
        sender.ws.send(
            encode(
                Send(id=message_id, conv=conv, payload=b"", device_payloads={dave_addr: payload})
            )
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            frame = receiver.recv()
            if isinstance(frame, Envelope) and frame.id == message_id:
                assert frame.device_payload == payload
                return
        raise AssertionError("the message never reached the other client")
    finally:
        sender.close()
        receiver.close()


def assert_clean_log(server: Any) -> None:
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


# --------------------------------------------------------------------------- the frames

CLIENT_FRAMES = values_of(msgspec.inspect.type_info(ClientFrame), "msgpack")
FRAMES = st.one_of(
    CLIENT_FRAMES.map(msgspec.msgpack.encode),
    mutated(CLIENT_FRAMES, "msgpack"),
)


def _closes_legitimately(data: bytes) -> bool:
    """A valid Hello with another version closes the connection (4426) before the first Hello;
    nothing else may."""
    try:
        frame = msgspec.msgpack.decode(data, type=ClientFrame)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return False
    return isinstance(frame, Hello) and frame.version != 1


def test_fuzzed_frames_on_a_live_connection(server):
    with rest(server) as http:
        alice, bob = new_account(http, "alice"), new_account(http, "bob")
        open_direct(http, alice, bob)
    device = Device(server.ws_url, alice["token"])
    device.hello()
    dropped: list[bytes] = []
    ran: list[int] = []

    @settings(FUZZ, max_examples=WS_EXAMPLES)
    @given(FRAMES)
    def check(data: bytes) -> None:
        ran.append(1)
        device.ws.send(data)
        try:
            device.ping()
        except (ConnectionClosed, TimeoutError):
            dropped.append(data)
            device.reconnect()
            device.hello()
            raise AssertionError(f"the connection did not survive {data[:200]!r}") from None

    try:
        check()
        assert len(ran) == WS_EXAMPLES
        # explicit edge cases next to the generated ones
        for data in (
            b"",
            b"\x91" * 200_000,
            encode(Ping()) + b"\x00" * (MAX_FRAME_BYTES + 10),
            b"\xdd\xff\xff\xff\xff",
        ):
            device.ws.send(data)
            device.ping()
        device.ws.send("a text frame")
        frames = device.ping()
        assert any(isinstance(f, Error) and f.code == "bad_frame" for f in frames)
    finally:
        device.close()
    assert not dropped
    assert_pair_still_talks(server)
    assert_clean_log(server)


def test_fuzzed_first_frames(server):
    with rest(server) as http:
        alice = new_account(http, "alice")
    ran: list[int] = []

    @settings(FUZZ, max_examples=PRE_HELLO_EXAMPLES)
    @given(FRAMES)
    def check(data: bytes) -> None:
        ran.append(1)
        device = Device(server.ws_url, alice["token"])
        try:
            device.ws.send(data)
            try:
                device.hello()
            except ConnectionClosed:
                assert _closes_legitimately(data), f"closed after {data[:200]!r}"
                assert device.ws.close_code == 4426
        finally:
            device.close()

    check()
    assert len(ran) == PRE_HELLO_EXAMPLES
    assert_pair_still_talks(server)
    assert_clean_log(server)


def test_text_frames_that_are_not_utf8_close_1007_and_nothing_else(server):
    with rest(server) as http:
        alice = new_account(http, "alice")
    ran: list[int] = []

    @settings(FUZZ, max_examples=UTF8_EXAMPLES)
    @given(st.binary(min_size=1, max_size=64).filter(lambda b: not _is_utf8(b)))
    def check(data: bytes) -> None:
        ran.append(1)
        device = Device(server.ws_url, alice["token"])
        try:
            device.hello()
            device.ws.send(data, text=True)
            with pytest.raises(ConnectionClosed):
                device.ping()
            assert device.ws.close_code == 1007
        finally:
            device.close()

    check()
    assert len(ran) == UTF8_EXAMPLES
    assert_pair_still_talks(server)
    assert_clean_log(server)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- REST

_PATH_SAFE = string.ascii_letters + string.digits + "-_.~"
PATH_TEXT = st.one_of(
    st.text(alphabet=_PATH_SAFE, min_size=1, max_size=70),
    st.text(min_size=1, max_size=30),
    st.sampled_from(["..", "%2e%2e", "a" * 2000, "%00", "-1", "0", str(2**64), "c" + "0" * 32]),
)
PATH_INT = st.one_of(
    _ints(1, 2**31 - 1, wire="json").map(str), st.sampled_from(["x", "1.5", "", "0x10", "१"])
)
CONTENT_TYPES = [
    "application/json", "application/json", "application/json; charset=utf-8", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
]  # fmt: skip


def _body(route: Route) -> st.SearchStrategy[bytes | None]:
    if route.request is None:
        return st.one_of(st.none(), st.just(b"{}"), st.binary(max_size=16))
    valid = values_of(msgspec.inspect.type_info(route.request), "json")
    return st.one_of(valid.map(msgspec.json.encode), mutated(valid, "json"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[Route, str, str, dict[str, str], bytes | None, str | None]:
    route = draw(st.sampled_from(ROUTES))
    params = {
        name: draw(PATH_INT if f"{{{name}:int}}" in route.path else PATH_TEXT)
        for name in route.params
    }
    path = route.path
    for name, value in params.items():
        placeholder = f"{{{name}:int}}" if f"{{{name}:int}}" in path else f"{{{name}:str}}"
        path = path.replace(placeholder, urllib.parse.quote(value, safe=""))
    query: dict[str, str] = {}
    for name in (*route.query, *draw(st.lists(st.sampled_from(["x", "limit"]), max_size=1))):
        if draw(st.booleans()):
            query[name] = draw(PATH_INT | PATH_TEXT)
    method = draw(st.sampled_from([route.method] * 6 + ["GET", "POST", "PUT", "DELETE", "PATCH"]))
    body = draw(_body(route))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return route, method, path, query, body, content_type


def test_fuzzed_rest_requests(server):
    with rest(server) as http:
        fuzzer, other = new_account(http, "fuzzer"), new_account(http, "other")
        open_direct(http, fuzzer, other)
        ran: list[int] = []
        credentials = st.sampled_from(
            [
                f"Bearer {fuzzer['token']}",
                f"Bearer {fuzzer['token']}",
                f"Bearer {fuzzer['token']}",
                None,
                "Bearer",
                "Bearer x.y",
                f"Basic {base64.b64encode(b'a:b').decode()}",
                "Bearer " + "A" * 300,
            ]
        )

        @settings(FUZZ, max_examples=REST_EXAMPLES)
        @given(requests(), credentials)
        def check(request: tuple[Any, ...], authorization: str | None) -> None:
            ran.append(1)
            route, method, path, query, body, content_type = request
            if route.name == "remove_device" and authorization == f"Bearer {fuzzer['token']}":
                authorization = None  # the fuzzer must not remove its own device
            headers = {}
            if authorization is not None:
                headers["Authorization"] = authorization
            if content_type is not None:
                headers["content-type"] = content_type
            r = http.request(method, path, params=query, content=body, headers=headers)
            assert r.status_code < 500, (route.name, method, path, body, r.status_code, r.text)
            if r.content and r.headers.get("content-type", "").startswith("application/json"):
                answer = r.json()
                if isinstance(answer, dict):
                    assert answer.get("code") != "internal", (route.name, path, body, r.text)

        check()
        assert len(ran) == REST_EXAMPLES
    assert_pair_still_talks(server)
    assert_clean_log(server)
