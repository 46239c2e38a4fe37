"""Push for channel posts end to end: a real `tidings serve` waking devices through the
APNs, FCM and WebPush stand-ins. Channels follow each subscriber's level (``none`` by default:
no wake-ups), only offline devices are woken, never the posting admin's, at most one wake per
device per ``channel_push_interval``, and no push body holds anything of the post."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.push_kit import PushServices, push_services, webpush_kind

from tidings.client import Client

pytestmark = pytest.mark.timeout(180)

#: Seconds between two channel wakes of one device in these tests (the default is 300).
INTERVAL = 6.0
LOUD_APNS = "c4" * 32
OWNER_APNS = "d5" * 32
QUIET_FCM = "fcm-token-quiet"
MARKER = "okapi-marker-51c2"


@pytest.fixture
async def services(tmp_path: Path, server_factory: Any) -> AsyncIterator[PushServices]:
    async with push_services(tmp_path) as found:
        server = server_factory(env={**found.env, "TIDINGS_CHANNEL_PUSH_INTERVAL": str(INTERVAL)})
        found.server = server  # type: ignore[attr-defined]
        try:
            yield found
        finally:
            server.kill()  # before the stand-ins stop: it holds connections to them


def wakes(services: PushServices) -> dict[str, list[str]]:
    """Who was woken, and how (APNs push type per token; FCM kind per token; WebPush)."""
    out: dict[str, list[str]] = {}
    for r in services.apns.requests:
        out.setdefault(r.token, []).append(r.headers["apns-push-type"])
    for s in services.fcm.sends:
        message = (s.body or {})["message"]
        out.setdefault(message["token"], []).append(message["data"]["k"])
    for w in services.webpush.pushes:
        out.setdefault("webpush", []).append(webpush_kind(w.plaintext).get("k", "?"))
    return out


async def test_channel_posts_wake_only_offline_subscribers_who_chose_all_rate_limited(
    services: PushServices, tmp_path: Path
) -> None:
    server = services.server  # type: ignore[attr-defined]
    names = ("owner", "loud", "quiet", "online")
    owner, loud, quiet, online = [
        await Client.create_account(tmp_path / n, server.url, n) for n in names
    ]
    try:
        channel = await owner.create_channel("Okapi sightings", handle="okapi_news", public=True)
        for reader in (loud, quiet, online):
            joined = await reader.subscribe(channel.id)
            assert joined.notify == "none", "channels start without wake-ups"
        # Every device could be woken: each has a registration.
        await owner.register_push("apns", OWNER_APNS)
        await loud.register_push("apns", LOUD_APNS)
        await quiet.register_push("fcm", QUIET_FCM)
        sub = services.webpush.subscribe()
        await online.register_push("webpush", sub.endpoint, p256dh=sub.p256dh, auth=sub.auth)
        # loud, online and the owner choose "all"; quiet keeps the default.
        for client in (owner, loud, online):
            assert (await client.set_channel_notify(channel.id, "all")).notify == "all"
        # Only "online" connects; the others stay offline (REST only).
        await online.start()
        await online.wait_synced(30)
        await services.settle()
        services.clear()

        first = await owner.post(channel.id, f"{MARKER} one")
        assert first.seq == 1
        await services.wait_for(lambda: LOUD_APNS in wakes(services))
        woken_at = time.monotonic()
        # Two more posts inside the window: no further wake for anybody.
        await owner.post(channel.id, f"{MARKER} two")
        await owner.post(channel.id, f"{MARKER} three")
        await services.settle(quiet=1.5)
        assert wakes(services) == {LOUD_APNS: ["alert"]}
        # The online subscriber got the posts over its socket, not by push.
        async with asyncio.timeout(20):
            while len((await online.history(channel.id, limit=10)).messages) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        # After the window, the next post wakes loud again (once).
        await asyncio.sleep(max(0.0, woken_at + INTERVAL + 0.5 - time.monotonic()))
        await owner.post(channel.id, f"{MARKER} four")
        await services.wait_for(lambda: len(wakes(services).get(LOUD_APNS, [])) >= 2)
        await services.settle(quiet=1.5)
        assert wakes(services) == {LOUD_APNS: ["alert", "alert"]}

        # The wake says only "something new here": nothing of the post or the channel.
        bodies = services.bodies()
        assert len(bodies) == 2
        for body in bodies:
            for secret in (MARKER, "Okapi", "okapi_news", channel.id, "owner"):
                assert secret.encode() not in body, (secret, body)
        for request in services.apns.requests:
            assert not request.problems
            assert request.headers["apns-priority"] == "10"
    finally:
        for client in (owner, loud, quiet, online):
            await client.close()
