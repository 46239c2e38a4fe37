"""Keepalive and dead-connection detection of the real runtime, on shortened timers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.types import ConnectionChanged, ConnectionState, EngineSettings


@pytest.mark.timeout(60)
async def test_pings_keep_a_quiet_connection_and_silence_kills_it(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ClientConfig(engine=EngineSettings(ping_interval=0.2, dead_after=1.5))
    client = await Client.create_account(tmp_path / "alice", server.url, "alice", config=config)
    states: list[ConnectionState] = []

    async def watch() -> None:
        async for event in client.events():
            if isinstance(event, ConnectionChanged):
                states.append(event.connection.state)

    watcher = asyncio.create_task(watch())
    try:
        await client.start()
        await client.wait_synced(timeout=20)
        # quiet, but pinged and ponged: stays online well past DEAD_AFTER
        await asyncio.sleep(3)
        assert client.connection.state is ConnectionState.ONLINE
        assert states.count(ConnectionState.ONLINE) == 1

        os.kill(server.pid, signal.SIGSTOP)  # the server hangs: no Pong, no close
        try:
            deadline = time.monotonic() + 10
            while client.connection.state is ConnectionState.ONLINE:
                assert time.monotonic() < deadline, "the silent connection was never dropped"
                await asyncio.sleep(0.1)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await client.wait_synced(timeout=30)  # and it comes back by itself
        assert client.connection.state is ConnectionState.ONLINE
        assert states.count(ConnectionState.ONLINE) == 2
    finally:
        watcher.cancel()
        await client.close()
