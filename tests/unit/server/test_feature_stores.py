"""The feature stores every back end implements beside :class:`Store` (push registrations and
levels, the media ledger and blob records, the history vault, the operator's admin view), run
on each back end of ``backends.BACKENDS``."""

from __future__ import annotations

import asyncio

import pytest

from tidings.server.delivery import Device
from tidings.server.domain import Refused
from tidings.server.push.store import NotifySetting, StoredRegistration
from tidings.server.store.postgres import PostgresStore
from tidings.server.store.postgres.admin import PostgresAdmin
from tidings.server.store.sqlite import SqliteStore
from tidings.server.store.sqlite.admin import SqliteAdmin
from tidings.server.vault.records import StoredPage


async def account(world, name: str) -> str:
    return (await world.account(name)).account_id


async def test_push_registrations_and_levels(world):
    alice = await account(world, "alice")
    bob = await account(world, "bob")
    record, _ = await world.engine.create_direct(Device(alice, 1, "alice", "primary"), "bob")
    store = world.store
    registration = StoredRegistration(alice, 1, "fcm", "tok", updated_at=5)
    await store.set_push_registration(registration)
    await store.set_push_registration(StoredRegistration(alice, 1, "fcm", "tok2", updated_at=6))
    assert (await store.push_registration(alice, 1)).token == "tok2"
    assert not await store.drop_push_registration(alice, 1, "tok")
    await store.set_notify_setting(bob, record.id, NotifySetting("mentions", 99))
    targets = await store.push_targets(record.id, [alice, bob])
    assert targets.conv_kind == "direct" and [r.token for r in targets.registrations] == ["tok2"]
    assert targets.settings == {bob: NotifySetting("mentions", 99)}
    assert await store.notify_settings_of(bob) == {record.id: NotifySetting("mentions", 99)}
    await store.set_notify_setting(bob, record.id, NotifySetting())
    assert await store.notify_setting(bob, record.id) == NotifySetting()
    assert await store.remove_device(alice, 1)  # the registration goes with the device
    assert await store.push_registration(alice, 1) is None


async def test_the_media_ledger_never_overshoots_a_quota(world):
    store = world.store
    alice = await account(world, "alice")
    granted = await asyncio.gather(
        *(store.media_reserve(alice, f"b{i}", 40, 100) for i in range(5))
    )
    assert sorted(granted) == [False, False, False, True, True]
    assert await store.media_usage(alice) == 80
    assert await store.media_reserve(alice, "b0", 40, 100)  # already held: granted again
    await store.blob_started("b0", kind="image", parts=2, upload_id="u", now=10)
    await store.blob_completed("b0", 20)
    blob = await store.blob("b0")
    assert blob is not None and (blob.kind, blob.parts, blob.upload_id, blob.completed_at) == (
        "image",
        2,
        None,
        20,
    )
    assert [b.blob_id for b in await store.blobs_older_than(30, completed=True)] == ["b0"]
    assert await store.media_release("b0") == (alice, 40)
    assert await store.media_release("b0") is None
    assert await store.media_usage(alice) == 40


async def test_the_vault(world):
    store = world.store
    alice = await account(world, "alice")
    assert await store.vault_account_id("alice") == alice
    assert await store.vault_enrol(alice, b"w", b"p", b"v", 1)
    assert not await store.vault_enrol(alice, b"other", b"p", b"v", 1)
    await store.vault_failure(alice, 3, 50, 2)
    key = await store.vault_key(alice)
    assert key is not None and (key.failures, key.blocked_until) == (3, 50)
    assert await store.vault_replace_key(alice, b"v", b"w2", b"p", b"v2", 3)
    pages = [StoredPage("b", 1, b"xx"), StoredPage("a", 1, b"y")]
    assert await store.vault_put_pages(alice, pages, 0, 4) == (2, 3)
    with pytest.raises(Refused):
        await store.vault_put_pages(alice, [StoredPage("a", 0, b"old")], 0, 5)
    with pytest.raises(Refused):
        await store.vault_put_pages(alice, [StoredPage("c", 1, b"zzzz")], 5, 5)
    assert await store.vault_list(alice) == [("a", 1, 1), ("b", 1, 2)]
    assert await store.vault_fetch(alice, ["b", "nope", "a"]) == [pages[0], pages[1]]
    await store.vault_ticket(b"t" * 32, alice, 1000)
    device = await store.vault_register(b"t" * 32, "newkey", b"h" * 32, "restored", 10, 5)
    assert device.device_id == 2
    again = await store.vault_register(b"t" * 32, "newkey", b"h" * 32, "restored", 11, 5)
    assert again == device


async def test_the_admin_view(world, store):
    if isinstance(store, SqliteStore):
        admin: SqliteAdmin | PostgresAdmin = SqliteAdmin(store)
    else:
        assert isinstance(store, PostgresStore)
        admin = PostgresAdmin(store)
    alice = await account(world, "alice")
    await account(world, "bob")
    assert [(u.username, u.status) for u in await admin.users()] == [
        ("alice", "active"),
        ("bob", "active"),
    ]
    assert await admin.set_status(alice, "removed", 5) == [1]
    assert await admin.inactive_accounts() == {alice}
    assert await admin.devices(alice) == []
    await admin.create_invite("i1", b"x" * 32, 1, None, 1, "for carol", "carol")
    assert not await admin.claim_invite(b"x" * 32, "dave", 2)
    assert await admin.claim_invite(b"x" * 32, "carol", 2)
    assert not await admin.claim_invite(b"x" * 32, "carol", 2)  # used up
    await admin.refund_invite(b"x" * 32)
    assert await admin.revoke_invite("i1", 3) and not await admin.revoke_invite("i1", 3)
    stats = await admin.stats()
    assert (stats.accounts, stats.disabled_accounts, stats.devices) == (2, 1, 1)
    assert await admin.pending_depth() == 0 and await admin.ready(5.0)
