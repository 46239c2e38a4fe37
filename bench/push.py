"""Push wake-ups at scale, in one server process: a 1,000-member group where 900 members are
offline with a registration and 99 are online. For every post: the time from the Send until
every wake is handed to the push service (a stand-in provider that records when each one
arrives), and the wakes per second the process sustains.

The server parts are the real ones (SQLite store, delivery service, push service, dispatcher
with its workers); only the push service at the end of the wire is an in-process stand-in, so
the figure is what one server process can decide and dispatch, not a provider's network.

    python -m bench.push [--members 1000] [--offline 900] [--posts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.client.ids import new_message_id
from tidings.protocol import Accepted, Send
from tidings.server.bus.base import Delivery
from tidings.server.bus.local import LocalBus
from tidings.server.delivery import DeliveryService, Device, new_id
from tidings.server.push.dispatcher import PushDispatcher
from tidings.server.push.presence import PresenceBus
from tidings.server.push.provider import Platform, PushRegistration, PushResult, Wake
from tidings.server.push.service import PushService
from tidings.server.push.store import StoredRegistration
from tidings.server.store import NewConversation
from tidings.server.store.sqlite import SqliteStore


class StandIn:
    """A push service that answers at once and records when each wake arrived."""

    platform = Platform.FCM

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        self.arrivals.append(time.perf_counter())
        return PushResult.delivered()

    async def aclose(self) -> None:
        return None


class Online:
    """A live connection that drops what it gets (the online members)."""

    def __init__(self, account_id: str, device_id: int) -> None:
        self.account_id = account_id
        self.device_id = device_id

    def deliver(self, delivery: Delivery) -> None:
        return None

    def replaced(self) -> None:
        return None

    def revoked(self) -> None:
        return None


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(members: int = 1000, offline: int = 900, posts: int = 10) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        try:
            return await _measure(store, members, offline, posts)
        finally:
            await store.close()


async def _measure(store: SqliteStore, members: int, offline: int, posts: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    accounts = [f"a{i:05d}" for i in range(members)]
    for i, account in enumerate(accounts):
        await store.create_account(
            account_id=account,
            username=f"user{i:05d}",
            device_name="phone",
            token_key=f"k{i:015d}",
            token_hash=hashlib.sha256(account.encode()).digest(),
            now=now,
        )
    admin = accounts[0]
    new = NewConversation(new_id("c"), uuid.uuid4(), admin, 1, now)
    change = await store.create_group(new, "bench", accounts[1:], members)
    conv = change.conversation.id
    bus = PresenceBus(LocalBus())
    for account in accounts[offline + 1 :]:  # the online ones, the admin among them
        await bus.attach(Online(account, 1))
    await bus.attach(Online(admin, 1))
    for account in accounts[1 : offline + 1]:
        await store.set_push_registration(
            StoredRegistration(account, 1, "fcm", f"token-{account}", updated_at=now)
        )
    standin = StandIn()
    dispatcher = PushDispatcher({Platform.FCM: standin}, queue_size=100_000, workers=4)
    push = PushService(
        store,
        bus,
        dispatcher,
        b"k" * 32,
        coalesce_seconds=0,  # every post wakes every offline member: the worst case
        silent_interval=0,
        platforms=[Platform.FCM],
    )
    delivery = DeliveryService(store, bus, member_cap=members, require_e2ee=False)
    delivery.push = push
    await dispatcher.start()
    sender = Device(admin, 1)
    handoff: list[float] = []
    accepted: list[float] = []
    started = time.perf_counter()
    try:
        for n in range(posts):
            standin.arrivals.clear()
            t0 = time.perf_counter()
            answer = await delivery.send(
                sender, Send(id=new_message_id(), conv=conv, payload=b"x" * 200)
            )
            accepted.append(time.perf_counter() - t0)
            assert isinstance(answer, Accepted), answer
            await push.settle()
            assert len(standin.arrivals) == offline, (n, len(standin.arrivals))
            handoff.append(max(standin.arrivals) - t0)
        elapsed = time.perf_counter() - started
    finally:
        await push.stop()
        await dispatcher.stop()
    total = posts * offline
    return {
        "members": members,
        "offline_registered": offline,
        "posts": posts,
        "all_handed_over_p50_ms": round(statistics.median(handoff) * 1000, 1),
        "all_handed_over_p99_ms": round(_pct(handoff, 0.99) * 1000, 1),
        "accepted_p50_ms": round(statistics.median(accepted) * 1000, 2),
        "pushes": total,
        "pushes_per_second": round(total / elapsed),
        "dispatcher": {"sent": dispatcher.counters.sent, "dropped": dispatcher.counters.dropped},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--offline", type=int, default=900)
    parser.add_argument("--posts", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.members, args.offline, args.posts)), indent=2))


if __name__ == "__main__":
    main()
