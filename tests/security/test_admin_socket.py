"""The admin socket is the admin API's only authentication, so it must never be reachable by
another local user, not even for a moment while it starts (a connection made then stays open)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tidings.server.listeners import side_listener


async def _app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_the_admin_socket_is_never_wider_than_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "admin.sock"
    modes: list[int] = []
    real_chmod = os.chmod

    def chmod(target: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        if str(target) == str(path):
            modes.append(mode)
        real_chmod(target, mode, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    async with side_listener(_app, uds=path, name="admin API"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    assert not path.exists()
    assert all(stat.S_IMODE(mode) & 0o077 == 0 for mode in modes), [oct(m) for m in modes]
