"""Profiles and the parts of Client that need no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.client import Client, ClientError, NotConnected, ProfileNotFound
from tidings.client.api import _ws_url


def test_websocket_url_follows_the_server_url() -> None:
    assert _ws_url("http://host:8080") == "ws://host:8080/v1/ws"
    assert _ws_url("https://chat.example.org/") == "wss://chat.example.org/v1/ws"
    with pytest.raises(ClientError):
        _ws_url("ftp://nope")


async def test_open_an_empty_profile(tmp_path: Path) -> None:
    with pytest.raises(ProfileNotFound):
        await Client.open(tmp_path / "nobody")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "token").write_text("x")
    (tmp_path / "half" / "tidings.db").write_bytes(b"")
    with pytest.raises(ProfileNotFound):
        await Client.open(tmp_path / "half")


async def test_create_account_needs_a_reachable_server(tmp_path: Path) -> None:
    with pytest.raises(NotConnected):
        await Client.create_account(tmp_path / "a", "http://127.0.0.1:9", "alice")
    assert not (tmp_path / "a" / "token").exists()
