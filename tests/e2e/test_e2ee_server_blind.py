"""Issue 4, end to end: the server never sees a message body. After a scripted run (1:1 and a
group, 100 unique marker strings in bodies) neither the server's files (its data directory,
logs, and the store's files: the SQLite database with its -wal and -shm, or the PostgreSQL
database's files and write-ahead log) nor any byte that crossed the wire — recorded by a TCP
proxy between the clients and the server, WebSocket frames unmasked — contains any marker."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from e2ee_kit import proxy_for, wait_for_body, websocket_payloads
from tests.integration.store_inspection import inspector

from tidings.client import Client


def _server_files(server: Any) -> dict[str, bytes]:
    """Every file of the server's data directory and of its store."""
    paths = {p for p in server.data_dir.rglob("*") if p.is_file()} | set(inspector(server).files())
    return {str(p): p.read_bytes() for p in sorted(paths)}


def _is_wal(name: str) -> bool:
    return name.endswith("-wal") or Path(name).parent.name == "pg_wal"


@pytest.mark.timeout(300)
async def test_the_server_never_sees_a_body(server: Any, tmp_path: Path) -> None:
    markers = [f"mk{uuid.uuid4().hex}" for _ in range(100)]
    async with proxy_for(server) as proxy:
        names = ("alice", "bob", "carol")
        clients = [await Client.create_account(tmp_path / n, proxy.url, n) for n in names]
        try:
            for client in clients:
                await client.start()
            for client in clients:
                await client.wait_synced(timeout=20)
            alice, bob, _carol = clients
            direct = await alice.open_direct("bob")
            group = await alice.create_group("blind", ["bob", "carol"])
            await bob.conversation(direct.id)
            for client in (bob, _carol):
                await client.conversation(group.id)
            sent = []
            for i, marker in enumerate(markers):
                sender = clients[i % 3] if i >= 50 else (alice, bob)[i % 2]
                conv = group.id if i >= 50 else direct.id
                sent.append((await sender.send_text(conv, f"secret {marker} end"), conv))
            for message, conv in sent:
                receivers = clients if conv == group.id else [alice, bob]
                for client in receivers:
                    if client.account.account_id != message.sender_id:
                        await wait_for_body(client, message.id, message.body, 60)
            files_running = _server_files(server)
        finally:
            for client in clients:
                await client.close()
        recording = proxy.recording
    server.stop()
    files_stopped = _server_files(server)

    assert any(_is_wal(name) for name in files_running)
    wire_from_server = [bytes(b) for b in recording.from_server]
    wire_from_clients = [websocket_payloads(bytes(b)) for b in recording.from_clients]
    # the recording works: what the server legitimately learns is in it
    assert any(b"carol" in chunk for chunk in wire_from_clients)
    assert any(b"blind" in chunk for chunk in wire_from_server)
    assert any(b"carol" in blob for blob in files_running.values())
    haystacks = {
        **{f"running:{k}": v for k, v in files_running.items()},
        **{f"stopped:{k}": v for k, v in files_stopped.items()},
        **{f"wire from server #{i}": v for i, v in enumerate(wire_from_server)},
        **{f"wire from client #{i}": v for i, v in enumerate(wire_from_clients)},
    }
    wanted = {marker.encode() for marker in markers}
    found = [
        (marker, where)
        for where, blob in haystacks.items()
        for marker in set(re.findall(rb"mk[0-9a-f]{32}", blob)) & wanted
    ]
    assert found == []
