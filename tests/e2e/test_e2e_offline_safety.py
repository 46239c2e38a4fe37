"""`tidings safety` works offline from the identity key stored for the contact and says when
it was last checked against the server; online it refreshes as before."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tidings.cli.main import main
from tidings.client import Client


async def _setup(url: str, tmp_path: Path) -> None:
    alice = await Client.create_account(tmp_path / "alice", url, "alice")
    bob = await Client.create_account(tmp_path / "bob", url, "bob")
    try:
        await alice.start()
        await alice.wait_synced(20)
        conv = await alice.open_direct("bob")
        await alice.safety_number("bob")  # fetches bob's identity key
        assert conv.kind == "direct"
    finally:
        await alice.close()
        await bob.close()


def _safety(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["safety", "--json", "--profile", str(tmp_path / "alice"), "@bob"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result: dict[str, Any] = json.loads(out.out)
    return result


def test_safety_number_offline(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_setup(server.url, tmp_path))
    online = _safety(tmp_path, capsys)
    assert online["online"] is True and online["checked_at"] is not None
    server.stop()
    offline = _safety(tmp_path, capsys)
    assert offline["online"] is False
    assert offline["safety_number"] == online["safety_number"]
    assert offline["checked_at"] == online["checked_at"]
    assert main(["safety", "--profile", str(tmp_path / "alice"), "@bob"]) == 0
    text = capsys.readouterr().out
    assert "offline" in text and "last checked against the server" in text
