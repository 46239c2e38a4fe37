"""Recovery with a username and a passphrase: identity, safety numbers and history come back;
a wrong passphrase changes nothing and is slowed; the server never sees a plaintext."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.backup.recovery import recover_account
from tidings.client.backup.service import WrongPassphraseError
from tidings.client.errors import ClientError, RateLimited

from .kit import PASSPHRASE, comparable, everything, pair, wait_texts

MARKER = "zebracorn"


@pytest.mark.timeout(240)
async def test_recover_on_a_fresh_profile_with_username_and_passphrase(
    server: Any, tmp_path: Path
) -> None:
    alice, bob = await pair(tmp_path, server.url)
    try:
        conv = await alice.open_direct("bob")
        sent = [await alice.send_text(conv.id, f"{MARKER} {i} from alice") for i in range(30)]
        await wait_texts(bob, conv.id, 30)
        for i in range(10):
            await bob.send_text(conv.id, f"{MARKER} {i} from bob")
        await wait_texts(alice, conv.id, 40)
        await bob.react(conv.id, sent[3].id, "👍")
        await alice.react(conv.id, sent[4].id, "🎉")
        await bob.mark_read(conv.id)
        await alice.verify("bob")
        await asyncio.sleep(1.5)
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()
        before = comparable(await everything(alice, conv.id))
        safety = await alice.safety_number("bob")
        identity = alice._store.keys.get_identity_key_pair().serialize()
        bob_safety = await bob.safety_number("alice")

        # A wrong passphrase: a typed error, nothing written.
        wrong = tmp_path / "wrong"
        with pytest.raises(WrongPassphraseError):
            await recover_account(server.url, wrong, "alice", "not the passphrase at all 42")
        assert not (wrong / "tidings.db").exists()

        phone = await recover_account(server.url, tmp_path / "phone", "alice", PASSPHRASE)
        try:
            assert phone.account.account_id == alice.account.account_id
            assert phone.account.device_id != alice.account.device_id
            assert phone._store.keys.get_identity_key_pair().serialize() == identity
            await phone.start()
            await phone.wait_synced(20)
            await phone.refresh_all()
            assert await phone.safety_number("bob") == safety
            assert await phone.is_verified("bob")
            after = comparable(await everything(phone, conv.id))
            assert after == before
            # Bob keeps chatting with the recovered device: no identity change, same number.
            await bob.send_text(conv.id, "welcome back")
            await wait_texts(phone, conv.id, 41)
            assert await bob.safety_number("alice") == bob_safety
            lines = await everything(bob, conv.id)
            assert not [m for m in lines if m.kind == "identity_changed"]
        finally:
            await phone.close()
    finally:
        await alice.close()
        await bob.close()
    # Nothing of a message or the passphrase on the server's disk or in its logs.
    assert_blind(Path(server.data_dir))


def assert_blind(data_dir: Path) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert MARKER.encode() not in data, path
            assert PASSPHRASE.encode() not in data, path


@pytest.mark.timeout(120)
async def test_wrong_passphrases_are_slowed_and_change_nothing(server: Any, tmp_path: Path) -> None:
    alice = await Client.create_account(tmp_path / "alice", server.url, "alice")
    try:
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()
    finally:
        await alice.close()
    outcomes = []
    for i in range(7):
        try:
            await recover_account(server.url, tmp_path / f"p{i}", "alice", f"guess number {i} x")
        except RateLimited:
            outcomes.append("limited")
        except WrongPassphraseError:
            outcomes.append("wrong")
        assert not (tmp_path / f"p{i}" / "token").exists()
    assert outcomes[:5] == ["wrong"] * 5
    assert "limited" in outcomes[5:]
    # The unknown username answers the same shape.
    with pytest.raises(ClientError):
        await recover_account(server.url, tmp_path / "nobody", "nobody", PASSPHRASE)
