"""Issue 4, end to end: a contact's identity key changes (bob "reinstalls": a new identity
key replaces the old one on the server). Alice sees an IdentityChanged event and a system line
in the chat; if she had verified bob, her messages to him fail with ``identity_changed`` until
she verifies again; if not, messages keep flowing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from e2ee_kit import Events, wait_for_body, wait_until

from tidings.client import Client
from tidings.client.types import IdentityChanged, MessageStatus
from tidings.crypto import IdentityKeyPair
from tidings.protocol import keys as wire
from tidings.protocol import routes


async def _account(server: Any, tmp_path: Path, name: str) -> Client:
    client = await Client.create_account(tmp_path / name, server.url, name)
    await client.start()
    await client.wait_synced(timeout=20)
    return client


async def _reinstall(client: Client) -> None:
    """A new identity key for the account, as after a reinstall: new keys published with
    ``replace_identity``, every session forgotten."""
    keys = client._store.keys
    keys.set_identity(IdentityKeyPair.generate())
    keys.db.execute("DELETE FROM e2ee_sessions")
    upload = msgspec.structs.replace(keys.initial_upload(), replace_identity=True)
    await client._rest.call(routes.UPLOAD_KEYS, wire.KeyCounts, upload)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("verified", [True, False])
async def test_identity_change(server: Any, tmp_path: Path, verified: bool) -> None:
    alice = await _account(server, tmp_path, "alice")
    bob = await _account(server, tmp_path, "bob")
    try:
        conv = await alice.open_direct("bob")
        await bob.conversation(conv.id)
        hello = await alice.send_text(conv.id, "hello bob")
        await wait_for_body(bob, hello.id, "hello bob")
        answer = await bob.send_text(conv.id, "hello alice")
        await wait_for_body(alice, answer.id, "hello alice")
        old_number = await alice.safety_number("bob")
        if verified:
            await alice.verify("bob")
            assert await alice.is_verified("bob")
        events = Events(alice)

        await _reinstall(bob)
        fresh = await bob.send_text(conv.id, "new phone, same bob")
        await wait_for_body(alice, fresh.id, "new phone, same bob")

        async def noticed() -> bool:
            return bool(events.of(IdentityChanged))

        await wait_until(noticed, 20, "IdentityChanged")
        [change] = events.of(IdentityChanged)
        assert change.username == "bob" and change.conv_id == conv.id
        assert change.was_verified is verified
        history = await alice.history(conv.id)
        lines = [m.body for m in history.messages if m.kind == "identity_changed"]
        assert "Your safety number with bob changed" in lines
        new_number = await alice.safety_number("bob")
        assert new_number != old_number and new_number == await bob.safety_number("alice")

        attempt = await alice.send_text(conv.id, "is that really you?")
        if verified:

            async def failed() -> bool:
                message = await alice.message(attempt.id)
                return message is not None and message.status is MessageStatus.FAILED

            await wait_until(failed, 20, "the message to fail")
            message = await alice.message(attempt.id)
            assert message is not None and message.fail_reason == "identity_changed"
            assert not await alice.is_verified("bob")
            await alice.verify("bob")
            await alice.retry(attempt.id)
        await wait_for_body(bob, attempt.id, "is that really you?")
        await events.stop()
    finally:
        await alice.close()
        await bob.close()
