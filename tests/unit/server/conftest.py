"""The delivery engine on a real SQLite store in a temporary directory, with a recording bus."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from tidings.protocol import Envelope, Receipt, Send, ServerFrame, decode_server_frame
from tidings.server.auth import new_token
from tidings.server.bus import Delivery, LocalBus
from tidings.server.delivery import DeliveryEngine, Device, new_id
from tidings.server.store import SqliteStore


@dataclasses.dataclass
class Recorder:
    """A bus subscriber standing in for a device's connection: keeps what it is given."""

    account_id: str
    device_id: int
    frames: list[ServerFrame] = dataclasses.field(default_factory=list)
    was_replaced: bool = False
    was_revoked: bool = False

    def deliver(self, delivery: Delivery) -> None:
        self.frames.append(decode_server_frame(delivery.data))

    def replaced(self) -> None:
        self.was_replaced = True

    def revoked(self) -> None:
        self.was_revoked = True

    def take(self) -> list[ServerFrame]:
        frames, self.frames = self.frames, []
        return frames

    def envelopes(self) -> list[Envelope]:
        return [f for f in self.take() if isinstance(f, Envelope)]

    def receipts(self) -> list[Receipt]:
        return [f for f in self.take() if isinstance(f, Receipt)]


class World:
    """An engine plus helpers to make accounts, devices and messages."""

    def __init__(self, store: SqliteStore, engine: DeliveryEngine, bus: LocalBus) -> None:
        self.store = store
        self.engine = engine
        self.bus = bus
        self.clock = 1_000_000

    def now(self) -> int:
        return self.clock

    async def account(self, username: str) -> Device:
        token = new_token()
        account_id = new_id("a")
        await self.store.create_account(
            account_id=account_id,
            username=username,
            device_name="primary",
            token_key=token.key,
            token_hash=token.secret_hash,
            now=self.clock,
        )
        return Device(account_id, 1, username, "primary")

    async def second_device(self, device: Device) -> Device:
        """Add device 2 to an account (no API does this yet; linking comes later)."""

        def tx(conn) -> None:
            conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES (?, 2, 'second', ?, x'00', 0)",
                (device.account_id, new_id("k")),
            )

        await self.store._write(tx)
        return Device(device.account_id, 2, device.username, "second")

    async def online(self, device: Device) -> Recorder:
        recorder = Recorder(device.account_id, device.device_id)
        await self.bus.attach(recorder)
        return recorder

    async def send(self, device: Device, conv: str, payload: bytes = b"x", msg_id=None):
        return await self.engine.send(
            device, Send(id=msg_id or uuid.uuid4(), conv=conv, payload=payload)
        )

    async def pending(self, device: Device) -> list[tuple[str, int]]:
        envelopes = await self.store.pending(device.account_id, device.device_id, ("", 0), 10_000)
        return [(e.conv, e.seq) for e in envelopes]

    async def count(self, table: str) -> int:
        def q(conn) -> int:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

        return await self.store._read(q)


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "tidings.sqlite3")
    await store.open()
    bus = LocalBus()
    holder: list[World] = []
    engine = DeliveryEngine(store, bus, member_cap=5, clock=lambda: holder[0].now())
    holder.append(World(store, engine, bus))
    try:
        yield holder[0]
    finally:
        await store.close()
