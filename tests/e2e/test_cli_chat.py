"""Whole flows through the ``tidings`` command, one subprocess per command, against a real
server: accounts, a direct chat with statuses up to ``read``, search, replies, reactions,
groups, and typed errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tidings"
    if script.exists():
        return [str(script)]
    found = shutil.which("tidings")
    return [found] if found else [sys.executable, "-m", "tidings"]


TIDINGS = _command()


class Cli:
    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def run(self, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*TIDINGS, *args, "--profile", str(self.profile), "--json"]
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if expect_ok:
            assert result.returncode == 0, f"{args} failed: {result.stderr}"
        return result

    def ok(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def fails(self, *args: str) -> dict[str, str]:
        result = self.run(*args, expect_ok=False)
        assert result.returncode != 0, f"{args} should have failed: {result.stdout}"
        assert result.stdout.strip() == ""
        error: dict[str, str] = json.loads(result.stderr.strip().splitlines()[-1])
        assert set(error) == {"code", "message"}
        return error


def by_id(messages: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    found = [m for m in messages if m["id"] == message_id]
    assert len(found) == 1, f"{message_id} appears {len(found)} times"
    return found[0]


@pytest.mark.timeout(400)
def test_two_profiles_chat_through_the_cli(server: Any, tmp_path: Path) -> None:
    alice, bob, carol = (Cli(tmp_path / n) for n in ("alice", "bob", "carol"))
    for cli, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        created = cli.ok("account", "create", "--server", server.url, name)
        assert created["username"] == name
        assert created["account_id"]

    # alice → bob, while bob is not running
    sent = alice.ok("send", "@bob", "fancy a walk along the river?")
    message_id = sent["id"]
    assert sent["status"] == "sent"
    assert alice.ok("status", message_id)["status"] == "sent"

    synced = bob.ok("sync")
    assert synced["synced"] is True
    got = by_id(synced["messages"], message_id)
    assert got["body"] == "fancy a walk along the river?"
    assert got["sender_name"] == "alice" and got["is_own"] is False
    # a second sync shows nothing again
    assert all(m["id"] != message_id for m in bob.ok("sync")["messages"])

    alice.ok("sync")
    assert alice.ok("status", message_id)["status"] == "delivered"

    history = bob.ok("history", "@alice")
    assert by_id(history["messages"], message_id)["seq"] >= 1
    hits = bob.ok("search", "river")["hits"]
    assert [h["message"]["id"] for h in hits] == [message_id]
    assert "[river]" in hits[0]["snippet"]
    assert bob.ok("search", "mountain")["hits"] == []

    reply = bob.ok("send", "@alice", "yes, at noon", "--reply-to", message_id)
    bob.ok("react", "@alice", message_id, "👍")
    conversations = bob.ok("conversations")["conversations"]
    assert [c["title"] for c in conversations] == ["alice"]
    assert conversations[0]["unread"] == 1
    bob.ok("read", "@alice")
    assert bob.ok("conversations")["conversations"][0]["unread"] == 0

    synced = alice.ok("sync")
    answer = by_id(synced["messages"], reply["id"])
    assert answer["reply_to"] == message_id
    assert alice.ok("status", message_id)["status"] == "read"
    mine = by_id(alice.ok("history", "@bob")["messages"], message_id)
    assert mine["reactions"] == {"👍": ["bob"]}
    assert mine["status"] == "read"

    # groups
    group = alice.ok("group", "create", "walkers", "@bob")
    gid = group["id"]
    assert sorted(m["username"] for m in group["members"]) == ["alice", "bob"]
    info = alice.ok("group", "add", gid, "@carol")
    assert sorted(m["username"] for m in info["members"]) == ["alice", "bob", "carol"]
    posted = alice.ok("send", f"#{gid}", "meet at the bridge")
    assert posted["status"] == "sent"
    carol_sync = carol.ok("sync")
    assert by_id(carol_sync["messages"], posted["id"])["body"] == "meet at the bridge"
    assert carol.ok("group", "info", gid)["title"] == "walkers"

    info = alice.ok("group", "remove", gid, "@carol")
    assert sorted(m["username"] for m in info["members"]) == ["alice", "bob"]
    carol.ok("sync")
    error = carol.fails("send", f"#{gid}", "am I still in?")
    assert error["code"] in ("not_member", "forbidden")

    bob.ok("sync")
    left = bob.ok("group", "leave", gid)
    assert left["left"] is True
    alice.ok("sync")
    info = alice.ok("group", "info", gid)
    assert [m["username"] for m in info["members"]] == ["alice"]
    titles = {c["title"] for c in alice.ok("conversations")["conversations"]}
    assert {"bob", "walkers"} <= titles

    # bad input: typed errors, non-zero exits, nothing on stdout
    assert alice.fails("send", "@nobody_here", "hello?")["code"] == "not_found"
    assert alice.fails("send", "#no-such-group", "hello?")["code"] in ("not_found", "not_member")
    assert carol.fails("group", "add", gid, "@carol")["code"] in ("not_member", "forbidden")
    assert alice.fails("status", "not-a-uuid")["code"] == "bad_argument"
    assert alice.fails("send", "bob", "no sigil")["code"] == "bad_argument"
    missing = Cli(tmp_path / "nobody")
    assert missing.fails("conversations")["code"] == "profile_not_found"
    usage = alice.run("history", expect_ok=False)
    assert usage.returncode == 2
    assert json.loads(usage.stderr.strip().splitlines()[-1])["code"] == "usage"


@pytest.mark.timeout(180)
def test_outbox_survives_an_unreachable_server(server: Any, tmp_path: Path) -> None:
    dora, eve = Cli(tmp_path / "dora"), Cli(tmp_path / "eve")
    dora.ok("account", "create", "--server", server.url, "dora")
    eve.ok("account", "create", "--server", server.url, "eve")
    assert eve.fails("account", "create", "--server", server.url, "dora")["code"] in (
        "username_taken",
        "profile_exists",
    )
    other = Cli(tmp_path / "other")
    assert other.fails("account", "create", "--server", server.url, "dora")["code"] == (
        "username_taken"
    )
    assert other.fails("account", "create", "--server", server.url, "No Such!")["code"] == (
        "invalid_username"
    )
    first = dora.ok("send", "@eve", "first, while the server is up")
    assert first["status"] == "sent"

    server.stop()
    queued = dora.ok("send", "@eve", "second, while it is down", "--wait", "1")
    assert queued["status"] == "sending"
    assert dora.ok("status", queued["id"])["status"] == "sending"
    # The first connect is refused: the one-shot command says so at once, naming the cause.
    down = dora.fails("sync", "--timeout", "2")
    assert down["code"] == "not_connected"
    assert "refused" in down["message"]
    assert dora.ok("status", queued["id"])["status"] == "sending"

    server.start()
    dora.ok("sync")
    assert dora.ok("status", queued["id"])["status"] == "sent"
    got = eve.ok("sync")["messages"]
    assert [m["body"] for m in got if m["kind"] == "text"] == [
        "first, while the server is up",
        "second, while it is down",
    ]
    assert eve.ok("sync", "--for", "0.5")["messages"] == []
    history = eve.ok("history", "@dora")["messages"]
    assert [m["id"] for m in history if m["kind"] == "text"] == [first["id"], queued["id"]]
