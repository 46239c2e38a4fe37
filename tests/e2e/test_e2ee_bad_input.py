"""Issue 4, end to end: a peer that sends garbage, replays a ciphertext or forges one never
corrupts a session. Alice's device sends through a recording proxy; then a raw connection with
her device token sends bob garbage, an exact replay of a captured ciphertext (under a new id)
and a forged copy (one bit flipped). Bob sees placeholders and Undecryptable events, asks for
a session reset, and every later message in both directions decrypts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from e2ee_kit import Events, proxy_for, wait_for_body, wait_until, websocket_messages
from websockets.asyncio.client import connect

from tidings.client import Client
from tidings.client.types import Undecryptable
from tidings.protocol import (
    Accepted,
    Hello,
    Send,
    Synced,
    decode_client_frame,
    decode_server_frame,
    encode,
)


async def _raw_send(server: Any, token: str, frames: list[Send]) -> None:
    """Send ``frames`` over a raw connection of the device with ``token``; wait for each
    Accepted."""
    async with connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None
    ) as ws:
        await ws.send(encode(Hello()))
        while not isinstance(decode_server_frame(await ws.recv()), Synced):
            pass
        for frame in frames:
            await ws.send(encode(frame))
            while True:
                answer = decode_server_frame(await asyncio.wait_for(ws.recv(), 10))
                if isinstance(answer, Accepted) and answer.id == frame.id:
                    break


@pytest.mark.timeout(180)
async def test_garbage_replays_and_forgeries_never_corrupt_a_session(
    server: Any, tmp_path: Path
) -> None:
    async with proxy_for(server) as proxy:
        alice = await Client.create_account(tmp_path / "alice", proxy.url, "alice")
        bob = await Client.create_account(tmp_path / "bob", server.url, "bob")
        for client in (alice, bob):
            await client.start()
            await client.wait_synced(timeout=20)
        conv = await alice.open_direct("bob")
        await bob.conversation(conv.id)
        first = await alice.send_text(conv.id, "one")
        await wait_for_body(bob, first.id, "one")
        reply = await bob.send_text(conv.id, "ok")
        await wait_for_body(alice, reply.id, "ok")
        second = await alice.send_text(conv.id, "two")
        await wait_for_body(bob, second.id, "two")
        await alice.close()
        captured = [
            frame
            for stream in proxy.recording.from_clients
            for data in websocket_messages(bytes(stream))
            for frame in [_client_frame(data)]
            if isinstance(frame, Send) and frame.id == second.id
        ]
        assert captured, "the proxy saw alice's Send"
        ciphertext = captured[0].device_payloads[f"{bob.account.account_id}:1"]
        forged = bytearray(ciphertext)
        forged[len(forged) // 2] ^= 0x01
        target = f"{bob.account.account_id}:1"
        bad = [
            Send(id=uuid.uuid4(), conv=conv.id, payload=b"", device_payloads={target: payload})
            for payload in (b"\x02" + b"garbage" * 9, ciphertext, bytes(forged), b"\x03\xff\x00")
        ]
        events = Events(bob)
        token = (tmp_path / "alice" / "token").read_text().strip()
        await _raw_send(server, token, bad)

        async def all_reported() -> bool:
            return len(events.of(Undecryptable)) == len(bad)

        await wait_until(all_reported, 30, "an Undecryptable event per bad message")
        assert {e.message_id for e in events.of(Undecryptable)} == {f.id for f in bad}
        for frame in bad:
            shown = await bob.message(frame.id)
            assert shown is not None and shown.kind == "undecryptable"
            assert shown.body == "This message could not be decrypted"

        alice = await Client.open(tmp_path / "alice")
        try:
            await alice.start()
            await alice.wait_synced(timeout=20)
            after = await alice.send_text(conv.id, "still fine?")
            await wait_for_body(bob, after.id, "still fine?")
            answer = await bob.send_text(conv.id, "yes, still fine")
            await wait_for_body(alice, answer.id, "yes, still fine")
            again = await alice.send_text(conv.id, "good")
            await wait_for_body(bob, again.id, "good")
        finally:
            await events.stop()
            await alice.close()
            await bob.close()


def _client_frame(data: bytes) -> object:
    try:
        return decode_client_frame(data)
    except Exception:
        return None
