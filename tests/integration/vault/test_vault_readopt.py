"""Enabling backup when the account already has a vault: an enable that died after the server
stored the enrolment, a device that never had the key, another passphrase, and reset."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.backup.recovery import recover_account
from tidings.client.backup.service import BackupExists, WrongPassphraseError
from tidings.client.backup.vault_client import VaultApi

from .kit import PASSPHRASE, comparable, everything, pair, wait_texts

OTHER = "quartz meadow juniper 47 falcon harbour"


class Killed(BaseException):
    """The process died here (nothing after this line of the client ran)."""


@pytest.mark.timeout(240)
async def test_an_enable_killed_after_the_enrolment_adopts_the_same_vault_key(
    server: Any, tmp_path: Path
) -> None:
    alice, bob = await pair(tmp_path, server.url)
    conv = await bob.open_direct("alice")
    for i in range(30):
        await bob.send_text(conv.id, f"before backup {i}")
    await wait_texts(alice, conv.id, 30)
    await bob.close()
    # The enrol call reaches the server and returns; the device dies before saving its keys.
    sent: list[bytes] = []
    api = alice._backup.api
    real_enrol = api.enrol

    async def enrol_then_die(wrapped: bytes, params: bytes, credential: bytes) -> Any:
        await real_enrol(wrapped, params, credential)
        sent.append(wrapped)
        raise Killed

    api.enrol = enrol_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await alice.enable_backup(PASSPHRASE)
    assert sent and (await api.status()).enrolled
    assert not (await alice.backup_status()).enabled
    await alice.close()

    alice = await Client.open(tmp_path / "alice")
    try:
        await alice.start()
        # another passphrase: a clear refusal, nothing changed
        with pytest.raises(BackupExists) as refused:
            await alice.enable_backup(OTHER)
        assert "change-passphrase" in refused.value.message
        assert "reset" in refused.value.message
        assert not (await alice.backup_status()).enabled
        # the same passphrase: the enrolment the server kept is adopted
        await alice.enable_backup(PASSPHRASE)
        keys = alice._backup.keys
        assert keys is not None and keys.wrapped == sent[0]
        assert (await alice.backup_status()).enabled
        assert await alice.backup_now() > 0
        mine = await everything(alice, conv.id)
    finally:
        await alice.close()

    # The vault opens with the passphrase on a new device: the same key sealed the pages.
    restored = await recover_account(server.url, tmp_path / "new", "alice", PASSPHRASE)
    try:
        assert keys.vault_key == restored._backup.keys.vault_key  # type: ignore[union-attr]
        texts = [m for m in await everything(restored, conv.id) if m.kind == "text"]
        assert comparable(texts) == comparable([m for m in mine if m.kind == "text"])
        assert len(texts) == 30
    finally:
        await restored.close()


@pytest.mark.timeout(300)
async def test_a_device_without_the_key_adopts_the_vault_and_reads_its_old_pages(
    server: Any, tmp_path: Path
) -> None:
    config = ClientConfig(keep_messages=20)
    alice, bob = await pair(tmp_path, server.url, config)
    laptop: Client | None = None
    try:
        conv = await alice.open_direct("bob")
        # the laptop is linked before backup is on: it gets no vault key, and none of the
        # history before its link
        codes: asyncio.Queue[str] = asyncio.Queue()
        link = asyncio.create_task(
            Client.link_device(
                tmp_path / "laptop", server.url, on_code=codes.put_nowait, config=config
            )
        )
        await alice.approve_device(await codes.get(), "laptop")
        laptop = await link
        await laptop.start()
        await laptop.wait_synced(20)
        await laptop.close()
        laptop = None
        for i in range(150):
            await bob.send_text(conv.id, f"old line {i}")
        await wait_texts(alice, conv.id, 150)
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()
        wrapped = alice._backup.keys.wrapped  # type: ignore[union-attr]

        laptop = await Client.open(tmp_path / "laptop", config=config)
        await laptop.start()
        await laptop.wait_synced(20)
        await laptop.enable_backup(PASSPHRASE)
        assert laptop._backup.keys is not None and laptop._backup.keys.wrapped == wrapped
        texts = [m.body for m in await everything(laptop, conv.id) if m.kind == "text"]
        assert texts == [f"old line {i}" for i in range(150)]
        assert await laptop.backup_now() >= 0

        # reset from the laptop: the vault is gone for every device; a new one starts fresh
        await laptop.reset_backup()
        assert not (await laptop.backup_status()).enabled
        assert not (await VaultApi(alice._rest).status()).enrolled
        await laptop.enable_backup(OTHER)
        await laptop.backup_now()
    finally:
        if laptop is not None:
            await laptop.close()
        await alice.close()
        await bob.close()
    with pytest.raises(WrongPassphraseError):
        await recover_account(server.url, tmp_path / "p1", "alice", PASSPHRASE)
    fresh = await recover_account(server.url, tmp_path / "p2", "alice", OTHER)
    await fresh.close()
