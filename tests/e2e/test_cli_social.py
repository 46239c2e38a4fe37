"""Profiles, blocking, device names and typing through the ``tidings`` command, as a user
runs it: display names in ``sync``/``history`` and the chat list, ``profile show``, a block
that silences the blocked account (its sends still look accepted to it), the device list with
the names given at link time, and typing indicators that leave nothing on the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.e2e.test_cli_everyday import accounts
from tests.integration.store_inspection import inspector


def _picture(path: Path) -> Path:
    image = Image.new("RGB", (900, 600), (200, 30, 30))
    for x in range(0, 900, 7):
        for y in range(0, 600, 5):
            image.putpixel((x, y), ((x * y) % 255, x % 255, y % 255))
    image.save(path)
    return path


@pytest.mark.timeout(300)
def test_profiles_show_as_display_names(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    shown = bob.ok(
        "profile", "set", "--name", "Bob Builder", "--about", "can we fix it",
        "--avatar", str(_picture(tmp_path / "pic.png")),
    )  # fmt: skip
    assert shown["name"] == "Bob Builder" and 0 < shown["avatar_bytes"] <= 64 * 1024
    bob.ok("send", "@alice", "hello from bob")
    synced = alice.ok("sync")
    texts = [m for m in synced["messages"] if m["kind"] == "text"]
    assert [(m["sender_name"], m["body"]) for m in texts] == [("Bob Builder", "hello from bob")]
    history = alice.ok("history", "@bob")["messages"]
    assert [m["sender_name"] for m in history if m["kind"] == "text"] == ["Bob Builder"]
    chats = alice.ok("conversations")["conversations"]
    assert [c["title"] for c in chats] == ["Bob Builder"]
    seen = alice.ok("profile", "show", "@bob")
    assert (seen["name"], seen["about"], seen["has_key"]) == ("Bob Builder", "can we fix it", True)
    assert seen["avatar_bytes"] == shown["avatar_bytes"]
    # the server holds only ciphertext of the profile
    blobs = [bytes(blob) for (blob,) in inspector(server).rows("profiles", "blob")]
    assert blobs and not any(b"Bob Builder" in blob or b"can we fix" in blob for blob in blobs)
    # without bob's key (no conversation with him) carol sees only the username
    (carol,) = accounts(server, tmp_path, "carol")
    assert carol.ok("profile", "show", "@bob")["name"] == "bob"


@pytest.mark.timeout(300)
def test_blocking_silences_and_the_blocked_is_not_told(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    alice.ok("profile", "set", "--name", "Alice A")
    bob.ok("send", "@alice", "first")
    alice.ok("send", "@bob", "hi")
    bob.ok("sync")  # alice's profile key comes with her message
    assert bob.ok("profile", "show", "@alice")["name"] == "Alice A"
    alice.ok("sync")
    alice.ok("block", "@bob")
    assert alice.ok("blocked")["blocked"] == ["bob"]
    sent = bob.ok("send", "@alice", "are you there?")
    assert sent["status"] == "sent"  # accepted as usual
    got = alice.ok("sync")
    assert [m["body"] for m in got["messages"] if m["kind"] == "text"] == []
    assert bob.ok("status", sent["id"])["status"] == "sent"  # never delivered
    # the rotated profile key does not reach bob: he sees the username only
    bob.ok("sync")
    assert bob.ok("profile", "show", "@alice")["name"] == "alice"
    alice.ok("unblock", "@bob")
    assert alice.ok("blocked")["blocked"] == []
    bob.ok("send", "@alice", "again")
    got = alice.ok("sync")
    assert [m["body"] for m in got["messages"] if m["kind"] == "text"] == ["again"]


@pytest.mark.timeout(300)
def test_device_list_shows_names_and_typing_leaves_nothing(server: Any, tmp_path: Path) -> None:
    (alice,) = accounts(server, tmp_path, "alice")
    devices = alice.ok("device", "list")["devices"]
    assert [(d["device_id"], d["name"], d["current"]) for d in devices] == [(1, "primary", True)]
    assert devices[0]["last_seen"] is None or devices[0]["last_seen"] > 0
    assert alice.ok("settings", "typing")["typing_indicators"] is True
    assert alice.ok("settings", "typing", "off")["typing_indicators"] is False
    assert alice.ok("settings", "read-receipts", "off")["read_receipts"] is False
    assert alice.ok("settings", "read-receipts")["read_receipts"] is False
    tables = inspector(server).tables()
    assert "privacy_settings" in tables and not any(
        "typing" in t for t in tables
    )  # typing is never stored
