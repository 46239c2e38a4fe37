"""Everyday features through the ``tidings`` command, as a user runs it: note to self (and
``@me``/own username no longer landing in someone else's chat), empty texts refused, other
people's terminal escapes shown visibly, chats named in every line, edit and delete, emoji
reactions only, stdin, ``--version``, a closed pipe, the default profile, ``sync --follow``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_cli_chat import TIDINGS, Cli, by_id


def human(cli: Cli, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a person runs it: no --json."""
    return subprocess.run(
        [*TIDINGS, *args, "--profile", str(cli.profile)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def accounts(server: Any, tmp_path: Path, *names: str) -> list[Cli]:
    made = []
    for name in names:
        cli = Cli(tmp_path / name)
        cli.ok("account", "create", "--server", server.url, name)
        made.append(cli)
    return made


@pytest.mark.timeout(300)
def test_note_to_self_and_writing_to_oneself(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    to_bob = alice.ok("send", "@bob", "hi bob")
    # the old bug: @alice resolved to the first direct chat with a member named alice
    note = alice.ok("send", "@alice", "note to self")
    assert note["conv_id"] != to_bob["conv_id"]
    also = alice.ok("send", "@me", "milk, eggs")
    assert also["conv_id"] == note["conv_id"]
    titles = {c["title"]: c for c in alice.ok("conversations")["conversations"]}
    assert titles["Note to Self"]["id"] == note["conv_id"]
    assert [m["username"] for m in titles["Note to Self"]["members"]] == ["alice"]
    history = alice.ok("history", "@me")["messages"]
    assert [m["body"] for m in history if m["kind"] == "text"] == ["note to self", "milk, eggs"]
    # bob never sees it
    synced = bob.ok("sync")
    assert [m["body"] for m in synced["messages"] if m["kind"] == "text"] == ["hi bob"]
    assert bob.ok("search", "milk")["hits"] == []

    # a second device of alice gets notes written from the first, and writes back
    laptop = Cli(tmp_path / "alice-laptop")
    link = subprocess.Popen(
        [*TIDINGS, "device", "link", "--server", server.url, "--profile", str(laptop.profile),
         "--json", "--name", "laptop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert link.stdout is not None
    code = json.loads(link.stdout.readline())["link_code"]
    alice.ok("device", "approve", code)
    assert link.wait(timeout=60) == 0
    later = alice.ok("send", "@me", "written after linking")
    got = laptop.ok("sync")["messages"]
    assert "written after linking" in [m["body"] for m in got]
    back = laptop.ok("send", "@me", "from the laptop")
    assert back["conv_id"] == later["conv_id"]
    assert "from the laptop" in [m["body"] for m in alice.ok("sync")["messages"]]


@pytest.mark.timeout(300)
def test_bad_input_is_refused_and_escapes_are_shown_visibly(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    for empty in ("", "   ", "\n\t"):
        assert alice.fails("send", "@bob", empty)["code"] == "empty_message"
    sent = alice.ok("send", "@bob", "lunch?")
    assert alice.fails("react", "@bob", sent["id"], "lol")["code"] == "bad_emoji"
    assert alice.fails("react", "@bob", sent["id"], "👍👍")["code"] == "bad_emoji"
    alice.ok("react", "@bob", sent["id"], "👩‍👩‍👧‍👦")

    evil = "red \x1b[31mALERT\x1b]0;pwned\x07 \u202eevil\x9b\nsecond line\r\nthird"
    alice.ok("send", "@bob", evil)
    synced = human(bob, "sync")
    assert synced.returncode == 0, synced.stderr
    out = synced.stdout
    for raw in ("\x1b", "\x07", "\u202e", "\x9b", "\r"):
        assert raw not in out
    assert "\\x1b[31mALERT\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    lines = out.splitlines()
    # one record per message: continuation lines are indented, every other line names the chat
    starts = [line for line in lines if not line.startswith(" ")]
    assert all(line.startswith("@alice ") for line in starts), lines
    assert any(line.strip().startswith("| second line") for line in lines)
    history = human(bob, "history", "@alice").stdout
    assert "\x1b" not in history and "\\x1b" in history
    assert all(line.startswith(("@alice ", " ")) for line in history.splitlines())
    # --json stays raw
    raw = bob.ok("history", "@alice")["messages"]
    assert evil in [m["body"] for m in raw]

    # search names the chat, never its id
    group = alice.ok("group", "create", "walkers", "@bob")
    alice.ok("send", f"#{group['id']}", "lunch by the river")
    bob.ok("sync")
    found = human(bob, "search", "lunch").stdout
    assert group["id"] not in found and sent["conv_id"] not in found
    assert any(line.startswith("#walkers ") for line in found.splitlines())
    assert any(line.startswith("@alice ") for line in found.splitlines())


@pytest.mark.timeout(300)
def test_edit_and_delete_through_the_cli(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    sent = alice.ok("send", "@bob", "see you at noon")
    bob.ok("sync")
    edited = alice.ok("edit", sent["id"], "see you at one")
    assert edited["body"] == "see you at one" and edited["edited"] is True
    synced = bob.ok("sync")
    got = by_id(synced["updates"], sent["id"])
    assert got["body"] == "see you at one" and got["edited"] is True
    assert bob.ok("search", "noon")["hits"] == []
    assert [h["message"]["id"] for h in bob.ok("search", "one")["hits"]] == [sent["id"]]
    info = bob.ok("info", sent["id"])
    assert [e["body"] for e in info["edits"]] == ["see you at noon"]
    assert "(edited)" in human(bob, "history", "@alice").stdout
    # only one's own messages
    assert bob.fails("edit", sent["id"], "hijack")["code"] == "not_own"
    assert alice.fails("edit", sent["id"], "  ")["code"] == "empty_message"

    alice.ok("delete", sent["id"])
    bob.ok("sync")
    gone = by_id(bob.ok("history", "@alice")["messages"], sent["id"])
    assert gone["deleted"] is True and gone["body"] == "This message was deleted"
    assert bob.ok("search", "one")["hits"] == []
    assert bob.ok("info", sent["id"])["edits"] == []

    other = alice.ok("send", "@bob", "keep this one")
    bob.ok("sync")
    bob.ok("delete", other["id"], "--for-me")
    assert all(m["id"] != other["id"] for m in bob.ok("history", "@alice")["messages"])
    assert by_id(alice.ok("history", "@bob")["messages"], other["id"])["body"] == "keep this one"


@pytest.mark.timeout(300)
def test_stdin_version_closed_pipe_default_profile_and_follow(server: Any, tmp_path: Path) -> None:
    (alice,) = accounts(server, tmp_path, "alice")
    bob = Cli(tmp_path / "bob")
    bob.ok("account", "create", "--server", server.url, "bob")

    version = subprocess.run([*TIDINGS, "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("tidings ")

    piped = human(alice, "send", "@bob", "-", stdin="line one\nline two\n")
    assert piped.returncode == 0, piped.stderr
    body = [m["body"] for m in bob.ok("sync")["messages"] if m["kind"] == "text"]
    assert body == ["line one\nline two"]

    for n in range(30):
        alice.ok("send", "@bob", f"message {n}")
    bob.ok("sync")
    head = subprocess.run(
        f"{' '.join(TIDINGS)} history @alice --profile {bob.profile} | head -1",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert head.returncode == 0 and head.stderr == "" and head.stdout.count("\n") == 1

    env = {**os.environ, "TIDINGS_PROFILE": str(bob.profile)}
    listed = subprocess.run(
        [*TIDINGS, "conversations", "--json"], capture_output=True, text=True, env=env,
        check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [c["title"] for c in json.loads(listed.stdout)["conversations"]] == ["alice"]

    follow = subprocess.Popen(
        [*TIDINGS, "sync", "--follow", "--profile", str(bob.profile)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        sent = alice.ok("send", "@bob", "are you there?")
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = json.loads(follow.stdout.readline())
            if record["id"] == sent["id"]:
                break
        assert record["body"] == "are you there?" and record["chat"] == "alice"
    finally:
        follow.terminate()
        follow.wait(timeout=20)
