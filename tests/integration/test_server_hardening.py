"""Bad input that used to hurt the real server process: MessagePack and JSON nested a thousand
levels deep, text frames (valid and invalid UTF-8), and secrets in the log at debug level."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import pytest
import websockets
import websockets.asyncio.client

from tidings.protocol import (
    Accepted,
    Ack,
    DeviceAccepted,
    DeviceEnvelope,
    DeviceSend,
    Envelope,
    Error,
    Ping,
    Send,
    encode,
)
from tidings.protocol.keys import (
    KeyUpload,
    KyberPreKey,
    OneTimePreKey,
    Provisioning,
    SignedPreKey,
)

SERVER_ENV = {"TIDINGS_REQUIRE_E2EE": "false"}
JSON = {"content-type": "application/json"}

#: a Ping whose ignored field ``x`` holds an array nested 5,000 levels deep
DEEP_PING = b"\x82\xa1t\xa4ping\xa1x" + b"\x91" * 5000 + b"\xc0"
#: the same with maps: {"a": {"a": …}}
DEEP_MAPS = b"\x81\xa1a" * 5000 + b"\xc0"


async def test_deeply_nested_frames_are_bad_frames_and_the_connection_survives(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    peer = await kit.connect(alice)
    await peer.hello()
    for frame in (DEEP_PING, DEEP_MAPS, b"\x91" * 100_000):
        await peer.send_raw(frame)
        error = await peer.expect(Error)
        assert error.code == "bad_frame", error
        await peer.ping()
    log = server.log_text()
    assert "RecursionError" not in log and "Traceback" not in log


async def test_deeply_nested_json_bodies_are_bad_requests(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    for body in (b"[" * 100_000, b'{"username": ' + b"[" * 50_000, b'{"a":' * 20_000):
        r = await kit.http.post(
            "/v1/conversations/direct",
            content=body,
            headers={**alice.headers, "content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "bad_frame"
    assert "Traceback" not in server.log_text()


async def test_a_valid_text_frame_is_a_bad_frame_and_the_connection_survives(server, server_kit):
    kit = server_kit(server)
    peer = await kit.connect(await kit.account("alice"))
    await peer.hello()
    await peer.send_raw("hello")
    error = await peer.expect(Error)
    assert error.code == "bad_frame"
    await peer.ping()


async def test_invalid_utf8_text_frames_close_1007_with_one_log_line_and_no_traceback(
    server, server_kit
):
    kit = server_kit(server)
    alice = await kit.account("alice")
    for _ in range(5):
        peer = await kit.connect(alice)
        await peer.hello()
        # text=True sends the bytes as a text frame as they are, without checking them
        await peer.ws.send(b"\xff\xfe not UTF-8 \xc3\x28", text=True)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await peer.recv()
        assert peer.ws.close_code == 1007
    # the server still serves
    peer = await kit.connect(alice)
    await peer.hello()
    await peer.ping()
    log = server.log_text()
    assert "Traceback" not in log
    assert " ERROR " not in log
    lines = [line for line in log.splitlines() if "not valid UTF-8" in line]
    # rate limited: one line for the five closes (the next would come a minute later)
    assert len(lines) == 1, lines
    assert " INFO " in lines[0]


# --------------------------------------------------------------------------- secrets in the log


def start_cli_server(server: Any) -> None:
    """Start ``server`` (a ServerProcess not started yet) as ``tidings serve --log-level debug``:
    the command line, not ``python -m tidings.server``."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_ACCOUNTS_PER_MINUTE="1000000",
        TIDINGS_REQUIRE_E2EE="false",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: v for k, v in server.env.items() if k == "TIDINGS_STORE"})
    cmd = [
        sys.executable, "-m", "tidings", "serve", "--host", "127.0.0.1",
        "--port", str(server.port), "--data", str(server.data_dir), "--log-level", "debug",
    ]  # fmt: skip
    with server.log_path.open("ab") as log:
        server._proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server._wait_healthy()


def forms(secret: bytes | str) -> set[str]:
    """The ways a secret could show up in a log line."""
    raw = secret.encode() if isinstance(secret, str) else secret
    out = {raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    out |= {base64.b64encode(raw).decode().rstrip("="), raw.hex(" ")}
    if isinstance(secret, str):
        out.add(secret)
    else:
        out.add(repr(raw)[2:-1])
    return {f for f in out if len(f) >= 12}


async def test_debug_log_holds_no_token_secret_key_or_payload(server_factory, server_kit):
    server = server_factory(start=False)
    try:
        start_cli_server(server)
        kit = server_kit(server)
        secrets_seen: set[str] = set()
        alice, bob, conv = await kit.direct_pair()
        for account in (alice, bob):
            key, _, secret = account.token.partition(".")
            secrets_seen |= {account.token, key, secret}

        # key uploads
        identity = b"\x05" + os.urandom(32)
        signed = b"\x05" + os.urandom(32)
        one_time = b"\x05" + os.urandom(32)
        kyber = b"\x08" + os.urandom(1568)
        upload = KeyUpload(
            identity_key=identity,
            registration_id=7,
            signed_prekey=SignedPreKey(1, signed, os.urandom(64)),
            kyber_last_resort=KyberPreKey(9, kyber, os.urandom(64)),
            prekeys=[OneTimePreKey(1, one_time)],
        )
        r = await kit.http.put(
            "/v1/keys", content=msgspec.json.encode(upload), headers={**alice.headers, **JSON}
        )
        assert r.status_code == 200, r.text
        # bob needs keys of his own to be reachable by DeviceSend
        upload.identity_key = b"\x05" + os.urandom(32)
        r = await kit.http.put(
            "/v1/keys", content=msgspec.json.encode(upload), headers={**bob.headers, **JSON}
        )
        assert r.status_code == 200, r.text
        r = await kit.http.post(
            "/v1/keys/claim",
            content=msgspec.json.encode({"devices": {alice.account_id: []}}),
            headers={**bob.headers, **JSON},
        )
        assert r.status_code == 200, r.text
        for key_bytes in (identity, signed, one_time, kyber[:40]):
            secrets_seen |= forms(key_bytes)

        # a provisioning flow
        ephemeral = b"\x05" + os.urandom(32)
        r = await kit.http.post(
            "/v1/provisioning",
            content=msgspec.json.encode({"ephemeral_key": ephemeral}),
            headers=JSON,
        )
        assert r.status_code == 201, r.text
        created = msgspec.json.decode(r.content, type=Provisioning)
        secrets_seen.add(created.secret)
        secret_header = {"Authorization": f"Bearer {created.secret}"}
        r = await kit.http.get(f"/v1/provisioning/{created.id}", headers=secret_header)
        assert r.status_code == 202
        sealed = b"SEALED-PROVISIONING-" + os.urandom(16)
        approve = {"device_name": "laptop", "ephemeral_key": ephemeral, "sealed": sealed}
        r = await kit.http.post(
            f"/v1/provisioning/{created.id}/approve",
            content=msgspec.json.encode(approve),
            headers={**alice.headers, **JSON},
        )
        assert r.status_code == 200, r.text
        r = await kit.http.get(f"/v1/provisioning/{created.id}", headers=secret_header)
        assert r.status_code == 200, r.text
        linked_token = r.json()["token"]
        secrets_seen |= {linked_token, *linked_token.split(".")}
        secrets_seen |= forms(sealed)

        # a WebSocket session with sends, device sends and acks
        a, b = await kit.connect(alice), await kit.connect(bob)
        await a.hello()
        await b.hello()
        for i in range(3):
            payload = f"PAYLOAD-MARKER-{i}-".encode() + os.urandom(8)
            secrets_seen |= forms(payload) | {"PAYLOAD-MARKER"}
            await a.send(Send(id=uuid.uuid4(), conv=conv, payload=payload))
            await a.until(Accepted)
            envelope, _ = await b.until(Envelope)
            assert envelope.payload == payload
            await b.send(Ack(upto={conv: envelope.seq}))
        device_payload = b"DEVICE-PAYLOAD-MARKER-" + os.urandom(8)
        secrets_seen |= forms(device_payload)
        bob_addr = f"{bob.account_id}:{bob.device_id}"
        await a.send(DeviceSend(id=uuid.uuid4(), messages={bob_addr: device_payload}))
        await a.until(DeviceAccepted)
        delivered, _ = await b.until(DeviceEnvelope)
        assert delivered.payload == device_payload
        await a.ping(n=1)
        await a.close()
        await b.close()
    finally:
        server.stop()

    log = server.log_text()
    # debug logging was on, and saw the handshakes and frames
    assert " DEBUG " in log
    assert "[redacted]" in log
    assert "BINARY [" in log
    leaked = sorted(s for s in secrets_seen if s in log)
    assert not leaked, f"found in the log: {leaked}"
    assert b"PAYLOAD-MARKER".hex() not in log
    # an encoded frame never shows either
    assert encode(Ping(n=1)).hex() not in log
