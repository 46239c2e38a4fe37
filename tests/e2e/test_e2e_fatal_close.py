"""Fatal closes end to end, against a real server: a removed device's running `tidings sync`
stops and says why (no reconnect loop), and of two clients on one profile the replaced one
does not fight back. A counting proxy in front of the server counts WebSocket handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from tests.forwarder import Forwarder

from tidings.client import Client
from tidings.client.types import ConnectionState
from tidings.protocol.close import CloseCode


class HandshakeCounter(Forwarder):
    """Forwards 127.0.0.1 connections to ``target_port``; counts WebSocket upgrades."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.handshakes = 0

    async def relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            first = up
            while data := await src.read(65536):
                if first and data.startswith(b"GET /v1/ws"):
                    self.handshakes += 1
                first = False
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


async def _link(first: Client, profile: Path, url: str) -> Client:
    codes: asyncio.Queue[str] = asyncio.Queue()
    link = asyncio.create_task(Client.link_device(profile, url, on_code=codes.put_nowait))
    await first.approve_device(await asyncio.wait_for(codes.get(), 30))
    return await asyncio.wait_for(link, 60)


async def _until(check: Any, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return bool(check())


async def test_a_removed_device_stops_and_its_cli_says_so(server: Any, tmp_path: Path) -> None:
    alice = await Client.create_account(tmp_path / "a1", server.url, "alice")
    try:
        async with HandshakeCounter(server.port) as proxy:
            second = await _link(alice, tmp_path / "a2", proxy.url)
            device_id = second.account.device_id
            await second.close()
            sync = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tidings",
                "sync",
                "--profile",
                str(tmp_path / "a2"),
                "--for",
                "60",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                assert await _until(lambda: proxy.handshakes >= 1, 30), "never connected"
                await asyncio.sleep(0.5)
                await alice.remove_device(device_id)
                _out, err = await asyncio.wait_for(sync.communicate(), 15)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    sync.kill()
            await asyncio.sleep(2)  # a reconnect loop would show up here
            assert proxy.handshakes == 1
        assert sync.returncode not in (0, None)
        text = err.decode()
        assert "removed" in text and "device_removed" in text, text
        assert "Traceback" not in text
    finally:
        await alice.close()


async def test_the_replaced_connection_does_not_fight_back(server: Any, tmp_path: Path) -> None:
    alice = await Client.create_account(tmp_path / "a1", server.url, "alice")
    await alice.close()
    async with HandshakeCounter(server.port) as proxy:
        first = await Client.open(tmp_path / "a1")
        second = await Client.open(tmp_path / "a1")
        first._rest.http.base_url = proxy.url  # type: ignore[assignment]
        for client in (first, second):
            client._runtime.ws_url = proxy.url.replace("http://", "ws://") + "/v1/ws"
        try:
            await first.start()
            await first.wait_synced(timeout=20)
            await second.start()
            await second.wait_synced(timeout=20)
            assert await _until(lambda: first.connection_state is ConnectionState.CLOSED, 10)
            await asyncio.sleep(3)  # neither takes the connection back
            assert first.connection.close_code == CloseCode.REPLACED
            assert second.connection_state is ConnectionState.ONLINE
            assert proxy.handshakes == 2
        finally:
            await first.close()
            await second.close()
