"""Push wake-ups end to end: a real `tidings serve` pushing through stand-ins that speak APNs
(HTTP/2 + TLS, its CA), FCM (OAuth2 JWT-bearer + v1) and WebPush (VAPID, and decrypting every
payload), with real end-to-end-encrypted clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.push_kit import PushServices, push_services, webpush_kind
from tests.integration.store_inspection import inspector

from tidings.client import Client, ServerRefused
from tidings.client.push import mute_until

pytestmark = pytest.mark.timeout(180)

APNS_TOKEN = "b2" * 32
MARKER = "zebra-marker-7e1f"


@pytest.fixture
async def services(tmp_path: Path, server_factory: Any) -> AsyncIterator[PushServices]:
    """The stand-ins, and ``services.server(**env)`` for a server using them; servers are
    killed before the stand-ins stop (they hold connections to them)."""
    async with push_services(tmp_path) as found:
        made: list[Any] = []

        def server(**env: str) -> Any:
            made.append(server_factory(env={**found.env, **env}))
            return made[-1]

        found.server = server  # type: ignore[attr-defined]
        try:
            yield found
        finally:
            for proc in made:
                proc.kill()


async def account(server: Any, tmp_path: Path, name: str) -> Client:
    return await Client.create_account(tmp_path / name, server.url, name)


async def link(server: Any, tmp_path: Path, existing: Client, profile: str) -> Client:
    codes: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        Client.link_device(tmp_path / profile, server.url, on_code=codes.put_nowait)
    )
    await existing.approve_device(await asyncio.wait_for(codes.get(), 30))
    return await asyncio.wait_for(task, 60)


async def vapid(server: Any, services: PushServices) -> None:
    async with httpx.AsyncClient() as http:
        key = (await http.get(f"{server.url}/v1/push/vapid")).json()["public_key"]
    assert key
    services.webpush.expected_vapid_key = key


async def status(client: Client, message_id: uuid.UUID) -> str:
    message = await client.message(message_id)
    return message.status.value if message is not None else "missing"


def apns_kinds(services: PushServices) -> list[tuple[str, str]]:
    return [
        (r.headers["apns-push-type"], r.headers["apns-priority"]) for r in services.apns.requests
    ]


def fcm_kinds(services: PushServices) -> list[tuple[str, str]]:
    out = []
    for r in services.fcm.sends:
        message = (r.body or {})["message"]
        out.append((message["data"]["k"], message["android"]["priority"]))
    return out


def webpush_kinds(services: PushServices, endpoint: str | None = None) -> list[tuple[str, str]]:
    return [
        (webpush_kind(r.plaintext)["k"], r.headers["urgency"])
        for r in services.webpush.pushes
        if endpoint is None or endpoint.endswith(r.subscription_id)
    ]


def assert_blind(services: PushServices, *secrets: str) -> None:
    """No message text, username or conversation id in any push body (WebPush decrypted)."""
    for body in services.bodies():
        for secret in secrets:
            assert secret.encode() not in body, (secret, body)
    for r in services.webpush.pushes:
        assert not r.problems
    for r in services.apns.requests:
        assert not r.problems
    for r in services.fcm.sends:
        assert not r.problems


async def test_offline_devices_get_one_push_each_online_none_and_sync_once_fetches_all(
    services: PushServices, tmp_path: Path
) -> None:
    server = services.server()  # type: ignore[attr-defined]
    await vapid(server, services)
    alice = await account(server, tmp_path, "alice")
    bob = await account(server, tmp_path, "bob")
    carol = await account(server, tmp_path, "carol")
    dave = await account(server, tmp_path, "dave")
    erin = await account(server, tmp_path, "erin")
    try:
        await bob.register_push("apns", APNS_TOKEN)
        await carol.register_push("fcm", "fcm-token-carol")
        sub_dave = services.webpush.subscribe()
        await dave.register_push(
            "webpush", sub_dave.endpoint, p256dh=sub_dave.p256dh, auth=sub_dave.auth
        )
        sub_erin = services.webpush.subscribe()
        await erin.register_push(
            "webpush", sub_erin.endpoint, p256dh=sub_erin.p256dh, auth=sub_erin.auth
        )
        assert (await bob.push_registration()) is not None
        await alice.start()
        await erin.start()
        await alice.wait_synced(30)
        await erin.wait_synced(30)
        group = await alice.create_group("Lunch", ["bob", "carol", "dave", "erin"])
        await services.settle()  # the membership change: silent wakes
        services.clear()

        await alice.send_text(group.id, f"{MARKER} one")
        await services.wait_for(lambda: services.count() >= 3)
        await alice.send_text(group.id, f"{MARKER} two")  # within the coalescing window
        await services.settle(quiet=1.5)
        assert apns_kinds(services) == [("alert", "10")]
        assert fcm_kinds(services) == [("alert", "high")]
        assert webpush_kinds(services, sub_dave.endpoint) == [("alert", "high")]
        assert webpush_kinds(services, sub_erin.endpoint) == []  # erin is online
        assert_blind(services, MARKER, "alice", "Lunch", group.id)
        # The hint is opaque, and each device can map it back to the chat.
        hint = webpush_kind(services.webpush.pushes[0].plaintext)["c"]
        await dave.refresh_all()
        assert dave.conversation_for_hint(hint) == group.id
        assert services.apns.requests[0].payload["c"] != hint  # per account

        # The push wake-up path: one bounded sync brings both messages and says they alert.
        result = await bob.sync_once(budget=20.0)
        assert result.complete
        bodies = sorted(m.body for m in result.arrived if m.kind == "text")
        assert bodies == [f"{MARKER} one", f"{MARKER} two"]
        assert sorted(m.body for m in result.notify) == bodies
        again = await bob.sync_once(budget=10.0)
        assert again.arrived == () and again.complete
    finally:
        for c in (alice, bob, carol, dave, erin):
            await c.close()


async def test_levels_mentions_mute_and_own_messages(
    services: PushServices, tmp_path: Path
) -> None:
    server = services.server(  # type: ignore[attr-defined]
        TIDINGS_PUSH_COALESCE_SECONDS="0", TIDINGS_PUSH_SILENT_INTERVAL="0"
    )
    alice = await account(server, tmp_path, "alice")
    bob = await account(server, tmp_path, "bob")
    carol = await account(server, tmp_path, "carol")
    try:
        alice2 = await link(server, tmp_path, alice, "alice2")
        await alice2.register_push("apns", "a3" * 32)
        await bob.register_push("apns", APNS_TOKEN)
        await carol.register_push("fcm", "fcm-token-carol")
        await alice.start()
        await alice.wait_synced(30)
        group = await alice.create_group("Team", ["bob", "carol"])
        direct = await alice.open_direct("bob")
        await bob.refresh_all()
        await carol.refresh_all()
        await bob.set_notifications(group.id, "mentions")
        await carol.set_notifications(group.id, "all", mute_until("8h"))
        assert [c for c in await bob.conversations() if c.id == group.id]
        assert bob.notifications(group.id).level == "mentions"
        await services.settle()
        services.clear()

        def kinds() -> dict[str, list[tuple[str, str]]]:
            out: dict[str, list[tuple[str, str]]] = {"bob": [], "alice2": []}
            for r in services.apns.requests:
                who = "bob" if r.token == APNS_TOKEN else "alice2"
                out[who].append((r.headers["apns-push-type"], r.headers["apns-priority"]))
            out["carol"] = fcm_kinds(services)
            return out

        # A group message without a mention: bob (mentions) and carol (muted) are woken
        # silently; alice's own offline device silently.
        await alice.send_text(group.id, "plain")
        await services.settle()
        assert kinds() == {
            "bob": [("background", "5")],
            "alice2": [("background", "5")],
            "carol": [("silent", "normal")],
        }
        services.clear()
        # Mentioning bob by @username alerts bob, not carol (muted) nor alice's own device.
        await alice.send_text(group.id, "lunch @bob?")
        await services.settle()
        assert kinds() == {
            "bob": [("alert", "10")],
            "alice2": [("background", "5")],
            "carol": [("silent", "normal")],
        }
        services.clear()
        # A direct chat alerts whatever; a reaction never alerts.
        sent = await alice.send_text(direct.id, "direct")
        await services.settle()
        assert kinds()["bob"] == [("alert", "10")]
        services.clear()
        await alice.react(direct.id, sent.id, "👍")
        await services.settle()
        assert kinds()["bob"] == [("background", "5")]
        services.clear()
        # Level none: only silent.
        await bob.set_notifications(group.id, "none")
        await alice.send_text(group.id, "@bob again")
        await services.settle()
        assert kinds()["bob"] == [("background", "5")]
        # bob sees the mention flag on the messages that mention him
        result = await bob.sync_once(budget=20.0)
        mentions = {m.body: m.mentions_me for m in result.arrived}
        assert mentions["lunch @bob?"] and not mentions["plain"]
        assert all(m.body != "plain" for m in result.notify)
        await alice2.close()
    finally:
        for c in (alice, bob, carol):
            await c.close()


async def test_gone_registrations_are_dropped_and_outages_retried(
    services: PushServices, tmp_path: Path
) -> None:
    server = services.server()  # type: ignore[attr-defined]
    await vapid(server, services)
    alice = await account(server, tmp_path, "alice")
    bob = await account(server, tmp_path, "bob")
    carol = await account(server, tmp_path, "carol")
    dave = await account(server, tmp_path, "dave")
    try:
        await bob.register_push("apns", APNS_TOKEN)
        await carol.register_push("fcm", "fcm-token-carol")
        sub = services.webpush.subscribe()
        await dave.register_push("webpush", sub.endpoint, p256dh=sub.p256dh, auth=sub.auth)
        services.apns.fail(APNS_TOKEN, 410, "Unregistered")
        services.fcm.fail("fcm-token-carol", 503, "UNAVAILABLE")
        services.webpush.fail(sub, 410)
        await alice.start()
        await alice.wait_synced(30)
        direct = await alice.open_direct("carol")
        await alice.open_direct("bob")
        await alice.open_direct("dave")
        await services.settle()
        for conv in await alice.conversations():
            message = await alice.send_text(conv.id, "hello")
            # the outage delays nothing: the message is stored and sent at once
            async with asyncio.timeout(5):
                while await status(alice, message.id) == "sending":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        await services.wait_for(lambda: len(services.fcm.sends) >= 2)
        services.fcm.failures.clear()  # FCM is back: the retry gets through
        await services.wait_for(lambda: any(r.status == 200 for r in services.fcm.sends))
        assert (await carol.push_registration()) is not None
        # 410 from APNs and from the WebPush service: the registrations are gone
        async with asyncio.timeout(10):
            while await bob.push_registration() is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            while await dave.push_registration() is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert direct.id
    finally:
        for c in (alice, bob, carol, dave):
            await c.close()


async def test_two_devices_one_online_only_the_offline_one_is_pushed_and_removal_drops_it(
    services: PushServices, tmp_path: Path
) -> None:
    server = services.server()  # type: ignore[attr-defined]
    alice = await account(server, tmp_path, "alice")
    bob = await account(server, tmp_path, "bob")
    try:
        bob2 = await link(server, tmp_path, bob, "bob2")
        await bob.register_push("fcm", "fcm-token-bob1")
        await bob2.register_push("apns", APNS_TOKEN)
        await bob.start()
        await bob.wait_synced(30)
        await alice.start()
        await alice.wait_synced(30)
        direct = await alice.open_direct("bob")
        await services.settle()
        services.clear()
        await alice.send_text(direct.id, "to both of bob's devices")
        await services.settle()
        assert apns_kinds(services) == [("alert", "10")]
        assert services.fcm.sends == []  # bob's first device is online
        # Another account never sees bob's registration; removing the device deletes it.
        assert await alice.push_registration() is None
        await bob2.close()
        await bob.remove_device(bob2.account.device_id)
        rows = inspector(server).rows("push_registrations", "device_id")
        assert rows == [(bob.account.device_id,)]
    finally:
        for c in (alice, bob):
            await c.close()


async def test_registration_is_checked(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(env={"TIDINGS_WEBPUSH_CONTACT": "mailto:ops@tidings.example"})
    alice = await account(server, tmp_path, "alice")
    try:
        for endpoint in (
            "http://push.example/x",  # not https
            "https://127.0.0.1:9/x",  # loopback
            "https://10.1.2.3/x",  # private
            "https://169.254.169.254/latest",  # link-local (cloud metadata)
            "https://user:pw@push.example/x",  # credentials
        ):
            with pytest.raises(ServerRefused) as refused:
                await alice.register_push("webpush", endpoint, p256dh="BAAA", auth="AAAA")
            assert refused.value.code == "bad_frame", endpoint
        with pytest.raises(ServerRefused):
            await alice.register_push("apns", "ab" * 32)  # no APNs configured here
        registration = await alice.register_push("log", "laptop")
        assert registration.platform == "log"
        assert json.loads(json.dumps(registration.token)) == "laptop"
        await alice.clear_push()
        assert await alice.push_registration() is None
        assert uuid.UUID(int=0)
    finally:
        await alice.close()
