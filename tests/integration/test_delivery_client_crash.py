"""Issue 2, done-when (c): a client process SIGKILLed right after it stored a message as
``sending`` sends that message exactly once after a restart (here: ``tidings sync``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.types import MessageAdded, MessageStatus

# Opens the profile, starts the runtime, stores one message and reports its id. Mode "hang":
# then waits to be killed from outside (used with the server down). Mode "in-flight": waits
# for the connection first, so the Send frame goes out at once, and kills itself right after
# ``send_text`` returns, before the server's Accepted can be taken in: the server has the
# message, the profile still says ``sending``.
CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from tidings.client import Client

async def main():
    client = await Client.open(Path(sys.argv[1]))
    await client.start()
    if sys.argv[4] == "in-flight":
        await client.wait_synced(timeout=30)
    message = await client.send_text(sys.argv[2], sys.argv[3])
    print(message.id, message.status, flush=True)
    if sys.argv[4] == "in-flight":
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

TIDINGS = [sys.executable, "-m", "tidings"]


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDINGS, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def store_and_die(profile: Path, conv_id: str, body: str, mode: str) -> uuid.UUID:
    """Run the child until it has stored the message, then SIGKILL it (or it kills itself)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(profile), conv_id, body, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, (
            f"child printed nothing; stderr:\n{child.stderr.read() if child.stderr else ''}"
        )
        message_id, status = line.split()
        assert status == "sending"
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -9
    return uuid.UUID(message_id)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["server-down", "in-flight"])
async def test_killed_client_sends_stored_message_exactly_once(
    server: Any, tmp_path: Path, mode: str
) -> None:
    server_reachable = mode == "in-flight"
    alice_profile, bob_profile = tmp_path / "alice", tmp_path / "bob"
    alice = await Client.create_account(alice_profile, server.url, "alice")
    bob = await Client.create_account(bob_profile, server.url, "bob")
    await bob.close()
    conv = await alice.open_direct("bob")
    await alice.close()

    if not server_reachable:
        await asyncio.to_thread(server.stop)
    body = f"written just before the crash ({mode})"
    child_mode = "in-flight" if server_reachable else "hang"
    message_id = await asyncio.to_thread(store_and_die, alice_profile, conv.id, body, child_mode)

    alice = await Client.open(alice_profile)
    try:
        stored = await alice.message(message_id)
        assert stored is not None, "the message was not durably stored before the crash"
        assert stored.status == MessageStatus.SENDING
    finally:
        await alice.close()

    if not server_reachable:
        await asyncio.to_thread(server.start)
    result = await asyncio.to_thread(run_cli, "sync", "--profile", str(alice_profile))
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)
    result = await asyncio.to_thread(
        run_cli, "status", "--profile", str(alice_profile), str(message_id)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] in ("sent", "delivered")
    # A follow-up message: a second copy of the first one stored by the server under a new
    # seq (which the recipient's client would drop by id) shows up as a hole before it.
    result = await asyncio.to_thread(
        run_cli, "send", "--profile", str(alice_profile), "@bob", "after the restart"
    )
    assert result.returncode == 0, result.stderr
    follow_up = uuid.UUID(json.loads(result.stdout)["id"])

    # The recipient gets exactly one copy with that id.
    bob = await Client.open(bob_profile)
    shown: Counter[uuid.UUID] = Counter()

    async def watch() -> None:
        async for event in bob.events():
            if isinstance(event, MessageAdded):
                shown[event.message.id] += 1

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    try:
        await bob.start()
        await bob.wait_synced(timeout=30)
        for _ in range(50):
            if shown[message_id] and shown[follow_up]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # let a duplicate event arrive, if there is one
        page = await bob.history(conv.id, limit=100)
        copies = [m for m in page.messages if m.kind == "text"]
        assert [m.id for m in copies] == [message_id, follow_up]
        assert copies[0].body == body
        assert shown[message_id] == 1
        seqs = [m.seq for m in page.messages]
        assert seqs == [1, 2, 3], f"seqs {seqs}: the server stored the message more than once"
    finally:
        watcher.cancel()
        await bob.close()

    # A second sync on alice's side sends nothing again and sees the delivery.
    result = await asyncio.to_thread(run_cli, "sync", "--profile", str(alice_profile))
    assert result.returncode == 0, result.stderr
    result = await asyncio.to_thread(
        run_cli, "status", "--profile", str(alice_profile), str(message_id)
    )
    assert json.loads(result.stdout)["status"] == "delivered"
