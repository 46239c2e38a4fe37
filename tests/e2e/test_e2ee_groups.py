"""Issue 4, end to end: a group of five with one removal and one join. The removed member
cannot decrypt later posts and the new member cannot decrypt earlier ones, shown at the crypto
level: the group ciphertexts, fetched from the server by a member, are handed to the other
device's own key store and do not open."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from e2ee_kit import body_of, wait_for_body, wait_until

from tidings.client import Client
from tidings.client.core.sealing import EndToEnd, Opened
from tidings.client.keystore import KeyStore
from tidings.protocol import Envelope
from tidings.protocol import rest as api


async def _fetch(server: Any, profile: Path, conv: str) -> list[Envelope]:
    """Every envelope of ``conv`` as the member with ``profile`` gets it over REST."""
    token = (profile / "token").read_text().strip()
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(
            f"/v1/conversations/{conv}/messages",
            params={"after": 0, "limit": 500},
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
    return msgspec.json.decode(response.content, type=api.MessagePage).envelopes


def _opens(profile: Path, client_account: Any, env: Envelope) -> bool:
    """Whether the device of ``profile`` can decrypt ``env`` with its own keys."""
    db = sqlite3.connect(profile / "tidings.db", isolation_level=None)
    try:
        keys = KeyStore(db)
        e2ee = EndToEnd(keys, client_account.account_id, client_account.device_id)
        db.execute("BEGIN")
        try:
            return isinstance(e2ee.open_envelope(env), Opened)
        finally:
            db.execute("ROLLBACK")
    finally:
        db.close()


@pytest.mark.timeout(300)
async def test_group_of_five_with_a_removal_and_a_join(server: Any, tmp_path: Path) -> None:
    names = ["ann", "ben", "cat", "dan", "eve"]
    clients: dict[str, Client] = {}
    try:
        for name in names:
            client = await Client.create_account(tmp_path / name, server.url, name)
            await client.start()
            clients[name] = client
        for client in clients.values():
            await client.wait_synced(timeout=20)
        group = await clients["ann"].create_group("five", names[1:])
        for name in names[1:]:
            await clients[name].conversation(group.id)
        posts = {}
        for name in names:
            posts[name] = await clients[name].send_text(group.id, f"{name} says hi")
        for name in names:
            for other in names:
                await wait_for_body(clients[other], posts[name].id, f"{name} says hi", 60)

        await clients["ann"].remove_member(group.id, "eve")
        eve_account = clients["eve"].account
        after = await clients["ann"].send_text(group.id, "eve is gone")
        ben_after = await clients["ben"].send_text(group.id, "ben after eve")
        for name in ("ann", "ben", "cat", "dan"):
            await wait_for_body(clients[name], after.id, "eve is gone", 60)
            await wait_for_body(clients[name], ben_after.id, "ben after eve", 60)
        assert await body_of(clients["eve"], after.id) is None
        await clients["eve"].close()
        del clients["eve"]

        fay = await Client.create_account(tmp_path / "fay", server.url, "fay")
        await fay.start()
        await fay.wait_synced(timeout=20)
        clients["fay"] = fay
        await clients["ann"].add_members(group.id, ["fay"])
        welcome = await clients["ann"].send_text(group.id, "welcome fay")
        for name in ("ben", "cat", "dan", "fay"):
            await wait_for_body(clients[name], welcome.id, "welcome fay", 60)
        from_fay = await fay.send_text(group.id, "thanks, fay here")
        for name in ("ann", "ben", "cat", "dan"):
            await wait_for_body(clients[name], from_fay.id, "thanks, fay here", 60)
        for name in names[:4]:
            assert await body_of(fay, posts[name].id) is None
        fay_account = fay.account
        await fay.close()
        del clients["fay"]
        dan_account = clients["dan"].account
        await clients["dan"].close()
        del clients["dan"]
        final = await clients["ann"].send_text(group.id, "dan is offline")

        async def stored() -> bool:
            message = await clients["ann"].message(final.id)
            return message is not None and message.seq is not None

        await wait_until(stored, 30, "the server to accept the last post")

        # At the crypto level, with the ciphertexts a member fetches from the server:
        envelopes = {e.id: e for e in await _fetch(server, tmp_path / "ann", group.id)}
        later = [envelopes[i] for i in (after.id, ben_after.id, welcome.id, final.id)]
        earlier = [envelopes[posts[n].id] for n in names] + [envelopes[after.id]]
        assert all(e.payload[:1] == b"\x07" for e in later + earlier)
        for env in later:
            assert not _opens(tmp_path / "eve", eve_account, env)
        for env in earlier:
            assert not _opens(tmp_path / "fay", fay_account, env)
        # control: the same check opens a post for a member that has not read it yet
        assert _opens(tmp_path / "dan", dan_account, envelopes[final.id])
    finally:
        for client in clients.values():
            await client.close()
