"""The vault at its edges: a reaction to a message no longer on the device, and messages the
server has not accepted yet."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tidings.client.api import ClientConfig
from tidings.client.backup.recovery import recover_account
from tidings.client.types import MessageStatus

from .kit import PASSPHRASE, everything, pair, wait_texts


@pytest.mark.timeout(240)
async def test_a_reaction_to_a_pruned_message_and_unsent_messages_reach_the_vault(
    server: Any, tmp_path: Path
) -> None:
    config = ClientConfig(keep_messages=20, backup_interval=3600)
    alice, bob = await pair(tmp_path, server.url, config)
    try:
        conv = await bob.open_direct("alice")
        for i in range(150):
            await bob.send_text(conv.id, f"line {i}")
        await wait_texts(alice, conv.id, 150)
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()
        local = alice._store.db.execute(
            "SELECT count(*) FROM messages WHERE conv_id = ?", (conv.id,)
        ).fetchone()[0]
        assert local <= 25  # line 3 is only in the vault now
        target = next(m for m in await everything(bob, conv.id) if m.body == "line 3")
        await bob.react(conv.id, target.id, "🎉")
        deadline = time.monotonic() + 20
        while not alice._store.db.execute(
            "SELECT 1 FROM reactions WHERE message_id = ?", (target.id.hex,)
        ).fetchone():
            assert time.monotonic() < deadline, "the reaction never arrived"
            await asyncio.sleep(0.1)
        assert await alice.backup_now() > 0
        seen = next(m for m in await everything(alice, conv.id) if m.body == "line 3")
        assert ("🎉", ("bob",)) in seen.reactions

        # written while offline: never accepted, still in the vault with its status
        await alice.background()
        await alice.send_text(conv.id, "written on the train")
        await alice.backup_now()
    finally:
        await alice.close()
        await bob.close()

    restored = await recover_account(
        server.url, tmp_path / "new", "alice", PASSPHRASE, config=config
    )
    try:
        history = await everything(restored, conv.id)
        line3 = next(m for m in history if m.body == "line 3")
        assert [e for e, _who in line3.reactions] == ["🎉"]
        unsent = [m for m in history if m.body == "written on the train"]
        assert len(unsent) == 1
        assert unsent[0].seq is None and unsent[0].is_own
        assert unsent[0].status is MessageStatus.SENDING
        assert [m.body for m in history if m.kind == "text"][-1] == "written on the train"
    finally:
        await restored.close()
