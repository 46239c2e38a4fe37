"""Retention with lazy loading, tampering, export/import and linked devices' history."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.integration.store_inspection import inspector

from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.errors import ClientError

from .kit import PASSPHRASE, comparable, everything, pair, wait_texts

SERVER_ENV = {
    "TIDINGS_SEND_RATE_DEVICE": "2000",
    "TIDINGS_SEND_BURST_DEVICE": "5000",
    "TIDINGS_SEND_RATE_ACCOUNT": "4000",
    "TIDINGS_SEND_BURST_ACCOUNT": "10000",
}


def local_rows(client: Client, conv_id: str) -> int:
    row = client._store.db.execute(
        "SELECT count(*) FROM messages WHERE conv_id = ?", (conv_id,)
    ).fetchone()
    return int(row[0])


def tamper(server: Any, page_id: str) -> None:
    store = inspector(server)
    ((sealed,),) = store.rows("vault_pages", "sealed", page_id=page_id)
    flipped = bytearray(sealed)
    flipped[-20] ^= 1
    assert store.update("vault_pages", {"sealed": bytes(flipped)}, page_id=page_id) == 1


@pytest.mark.timeout(300)
async def test_retention_keeps_n_rows_and_paging_reaches_message_one(
    server: Any, tmp_path: Path
) -> None:
    config = ClientConfig(keep_messages=100)
    alice, bob = await pair(tmp_path, server.url, config)
    try:
        conv = await alice.open_direct("bob")
        for i in range(260):
            await alice.send_text(conv.id, f"retained {i}")
        await wait_texts(bob, conv.id, 260, within=120)
        await bob.react(conv.id, (await everything(bob, conv.id))[5].id, "👍")
        await asyncio.sleep(1.5)
        full = comparable(await everything(alice, conv.id))
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()
        assert local_rows(alice, conv.id) <= 100
        # FTS rows went with them: a local search no longer finds the oldest ones.
        assert not await alice.search("retained 3") or all(
            h.message.seq and h.message.seq > 150 for h in await alice.search("retained 3")
        )
        assert comparable(await everything(alice, conv.id)) == full
        assert (await everything(alice, conv.id))[0].body.startswith("alice started") or full[0][
            4
        ] == (await everything(alice, conv.id))[0].body
        hits = await alice.search_older("retained 7")
        assert any(h.message.body == "retained 7" for h in hits)

        # Export, then import into the same account's other profile state.
        export = tmp_path / "vault.tidings"
        pages = await alice.export_backup(export)
        assert pages > 3
        removed = alice._store.db.execute(
            "DELETE FROM messages WHERE conv_id = ? AND body = 'retained 200'", (conv.id,)
        ).rowcount
        alice._store.db.commit()
        assert removed == 1
        assert await alice.import_backup(export, PASSPHRASE) >= 1
        assert comparable(await everything(alice, conv.id)) == full
        await alice.backup_now()  # retention again: the imported old rows go back to the vault
        assert local_rows(alice, conv.id) <= 100

        # Tampering with a stored page is detected, not shown.
        tamper(server, f"h/{conv.id}/0")
        await alice.close()
        alice = await Client.open(tmp_path / "alice", config)
        with pytest.raises(ClientError) as raised:
            await everything(alice, conv.id)
        assert raised.value.code == "vault_tampered"
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.timeout(400)
async def test_a_device_linked_after_2000_messages_scrolls_to_the_first(
    server: Any, tmp_path: Path
) -> None:
    alice, bob = await pair(tmp_path, server.url)
    try:
        conv = await alice.open_direct("bob")
        await alice.enable_backup(PASSPHRASE)
        for i in range(2000):
            await alice.send_text(conv.id, f"early {i}")
        await wait_texts(bob, conv.id, 2000, within=240)
        await asyncio.sleep(1.0)
        await alice.backup_now()
        codes: asyncio.Queue[str] = asyncio.Queue()
        link = asyncio.create_task(
            Client.link_device(tmp_path / "laptop", server.url, on_code=codes.put_nowait)
        )
        await alice.approve_device(await codes.get(), "laptop")
        laptop = await link
        try:
            await laptop.start()
            await laptop.wait_synced(20)
            await laptop.refresh_all()
            lines = await everything(laptop, conv.id, limit=100)
            texts = [m.body for m in lines if m.kind == "text"]
            assert texts[0] == "early 0"
            assert len(texts) == 2000
        finally:
            await laptop.close()
    finally:
        await alice.close()
        await bob.close()
