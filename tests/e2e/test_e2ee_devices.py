"""Issue 4, end to end: 1:1 with two devices on each side (linked through the real
provisioning flow), and a device linked in the middle of a conversation."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from e2ee_kit import body_of, link, wait_for_body, wait_until

from tidings.client import Client, ClientError, ProfileNotFound
from tidings.client.types import MessageStatus
from tidings.crypto import IdentityKeyPair
from tidings.protocol.keys import KeyCounts


async def _account(server: Any, tmp_path: Path, name: str) -> Client:
    client = await Client.create_account(tmp_path / name, server.url, name)
    await client.start()
    await client.wait_synced(timeout=20)
    return client


@pytest.mark.timeout(180)
async def test_direct_chat_with_two_devices_on_each_side(server: Any, tmp_path: Path) -> None:
    alice = await _account(server, tmp_path, "alice")
    bob = await _account(server, tmp_path, "bob")
    made = [alice, bob]
    try:
        alice2 = await link(alice, tmp_path / "alice2", server.url, "alice-laptop")
        made.append(alice2)
        bob2 = await link(bob, tmp_path / "bob2", server.url, "bob-laptop")
        made.append(bob2)
        assert alice2.account.account_id == alice.account.account_id
        assert alice2.account.device_id != alice.account.device_id

        conv = await alice.open_direct("bob")
        first = await alice.send_text(conv.id, "hello from alice's phone")
        for client in (bob, bob2, alice2):
            await wait_for_body(client, first.id, "hello from alice's phone")
        answer = await bob2.send_text(conv.id, "bob answers from the laptop")
        for client in (alice, alice2, bob):
            await wait_for_body(client, answer.id, "bob answers from the laptop")
        third = await alice2.send_text(conv.id, "and alice from hers")
        for client in (alice, bob, bob2):
            await wait_for_body(client, third.id, "and alice from hers")
        other_copy = await alice.message(third.id)
        assert other_copy is not None and other_copy.is_own

        async def delivered() -> bool:
            message = await alice.message(first.id)
            return message is not None and message.status in (
                MessageStatus.DELIVERED,
                MessageStatus.READ,
            )

        await wait_until(delivered, 30, "delivered")

        numbers = {
            await alice.safety_number("bob"),
            await alice2.safety_number("bob"),
            await bob.safety_number("alice"),
            await bob2.safety_number("alice"),
        }
        assert len(numbers) == 1
        (number,) = numbers
        assert len(number) == 60 and number.isdigit()
    finally:
        for client in made:
            await client.close()


@pytest.mark.timeout(180)
async def test_device_linked_in_the_middle_of_a_conversation(server: Any, tmp_path: Path) -> None:
    alice = await _account(server, tmp_path, "alice")
    bob = await _account(server, tmp_path, "bob")
    made = [alice, bob]
    try:
        conv = await alice.open_direct("bob")
        before = [await alice.send_text(conv.id, f"before the link {i}") for i in range(3)]
        for message in before:
            await wait_for_body(bob, message.id, message.body)
        reply = await bob.send_text(conv.id, "bob before the link")
        await wait_for_body(alice, reply.id, "bob before the link")

        bob2 = await link(bob, tmp_path / "bob2", server.url, "tablet")
        made.append(bob2)
        after = await alice.send_text(conv.id, "after the link")
        for client in (bob, bob2):
            await wait_for_body(client, after.id, "after the link")
        # earlier messages were never encrypted to the new device
        for message in before:
            assert await body_of(bob2, message.id) in (None, "")
        from_tablet = await bob2.send_text(conv.id, "hi from the tablet")
        for client in (alice, bob):
            await wait_for_body(client, from_tablet.id, "hi from the tablet")
    finally:
        for client in made:
            await client.close()


@pytest.mark.timeout(120)
async def test_one_time_prekeys_are_refilled(server: Any, tmp_path: Path) -> None:
    alice = await _account(server, tmp_path, "alice")
    bob = await _account(server, tmp_path, "bob")
    try:
        token = (tmp_path / "bob" / "token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:

            async def counts() -> KeyCounts:
                own = {"Authorization": f"Bearer {(tmp_path / 'alice' / 'token').read_text()}"}
                response = await http.get("/v1/keys/counts", headers=own)
                return msgspec.json.decode(response.content, type=KeyCounts)

            assert (await counts()).prekeys == 100
            for _ in range(85):  # bundles claimed by someone: 15 one-time prekeys left
                (await http.get(f"/v1/keys/{alice.account.account_id}")).raise_for_status()
            assert (await counts()).prekeys == 15
            await alice.background()
            await alice.foreground()  # every sync checks the counts
            await alice.wait_synced(timeout=20)

            async def refilled() -> bool:
                return (await counts()).prekeys >= 100

            await wait_until(refilled, 20, "the refill")
            assert (await counts()).kyber_prekeys >= 100
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.timeout(120)
async def test_a_link_with_a_foreign_identity_key_fails(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await _account(server, tmp_path, "alice")
    try:
        # the approving side hands over an identity key that is not the account's
        monkeypatch.setattr(alice._store.keys, "get_identity_key_pair", IdentityKeyPair.generate)
        with pytest.raises(ClientError) as caught:
            await link(alice, tmp_path / "second", server.url)
        assert caught.value.code == "bad_link"
        # no half-made profile that would run without keys
        assert not (tmp_path / "second" / "token").exists()
        with pytest.raises(ProfileNotFound):
            await Client.open(tmp_path / "second")
    finally:
        monkeypatch.undo()
        await alice.close()


@pytest.mark.timeout(120)
async def test_profiles_are_private_whatever_the_umask(server: Any, tmp_path: Path) -> None:
    old = os.umask(0o022)
    made: list[Client] = []
    try:
        alice = await _account(server, tmp_path, "alice")
        made.append(alice)
        made.append(await link(alice, tmp_path / "alice2", server.url))
        for client in made:
            assert stat.S_IMODE(os.stat(client.profile).st_mode) == 0o700
            for name in ("token", "tidings.db", "tidings.db-wal", "tidings.db-shm"):
                mode = stat.S_IMODE(os.stat(client.profile / name).st_mode)
                assert mode == 0o600, (client.profile, name, oct(mode))
    finally:
        os.umask(old)
        for client in made:
            await client.close()
