"""Broadcast channels through the ``tidings`` command, as a user runs it: create, post,
subscribe from another profile by handle or invite link, posts in ``history`` and ``search``,
a subscriber refused when it posts, a revoked link, and a post altered in the server's store
marked ``(unverified)``."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from tests.e2e.test_cli_chat import TIDINGS
from tests.e2e.test_cli_everyday import accounts
from tests.integration.store_inspection import inspector

from tidings.protocol.channels import encode_content


def plain(cli: Any, *args: str) -> str:
    """What a person sees (no --json)."""
    cmd = [*TIDINGS, *args, "--profile", str(cli.profile)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)
    return done.stdout


@pytest.mark.timeout(300)
def test_channel_create_post_subscribe_and_verify(server: Any, tmp_path: Any) -> None:
    alice, bob, carol = accounts(server, tmp_path, "alice", "bob", "carol")
    made = alice.ok("channel", "create", "Town news", "--handle", "town_news")
    cid = made["id"]
    assert made["role"] == "owner" and made["public"] and made["subscribers"] == 1
    assert alice.ok("channel", "post", f"#{cid}", "market on friday")["seq"] == 1
    assert bob.ok("channel", "find", "@town_news")["id"] == cid
    joined = bob.ok("channel", "join", "@town_news")
    assert joined["role"] == "subscriber" and joined["subscribers"] == 2
    history = bob.ok("history", f"#{cid}")["messages"]
    assert [(m["body"], m["verified"]) for m in history] == [("market on friday", True)]

    alice.ok("channel", "post", "#Town news", "road closed")
    bob.ok("channel", "sync")
    hits = bob.ok("search", "road")["hits"]
    assert [h["message"]["body"] for h in hits] == ["road closed"]
    chats = {c["id"]: c for c in bob.ok("conversations")["conversations"]}
    assert chats[cid]["kind"] == "channel" and chats[cid]["subscribers"] == 2
    assert not chats[cid]["is_admin"]
    text = plain(bob, "conversations")
    assert "#Town news (channel)" in text

    # A subscriber cannot post.
    refused = bob.fails("channel", "post", f"#{cid}", "spam")
    assert refused["code"] == "forbidden"

    # Private: an invite link joins until it is revoked.
    private = alice.ok("channel", "create", "Staff", "--private")["id"]
    link = alice.ok("channel", "invite", "create", f"#{private}")["token"]
    assert carol.ok("channel", "join", f"tidings://join/{link}")["role"] == "subscriber"
    alice.ok("channel", "invite", "revoke", f"#{private}", link)
    assert bob.fails("channel", "join", link)["code"] == "not_found"
    shown = alice.ok("channel", "admins", "add", f"#{private}", "@carol")
    assert [a["username"] for a in shown["admins"]] == ["alice", "carol"]
    info = carol.ok("channel", "info", f"#{private}")
    assert info["role"] == "admin" and info["subscribers"] == 2

    # Altered in the server's store: a fresh reader marks it.
    altered = {"content": encode_content("road open")}
    assert inspector(server).update("channel_posts", altered, channel=cid, seq=2) == 1
    carol.ok("channel", "subscribe", "@town_news")
    history = carol.ok("history", f"#{cid}")["messages"]
    assert [(m["body"], m["verified"]) for m in history] == [
        ("market on friday", True),
        ("road open", False),
    ]
    assert "(unverified)" in plain(carol, "history", f"#{cid}").splitlines()[-1]
