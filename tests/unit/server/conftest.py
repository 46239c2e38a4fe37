"""The delivery engine on a real store (each back end of ``backends.BACKENDS``: SQLite in a
temporary directory, PostgreSQL in a database of the test's own), with a recording bus."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tidings.protocol import Envelope, Receipt, Send, ServerFrame, decode_server_frame
from tidings.server.auth import new_token
from tidings.server.bus import Delivery
from tidings.server.bus.local import LocalBus
from tidings.server.delivery import DeliveryService, Device, new_id
from tidings.server.store import NewDeviceLink, Store

from .backends import BACKENDS, Backend, Inspector, backend


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

    def __init__(
        self, store: Store, inspector: Inspector, engine: DeliveryService, bus: LocalBus
    ) -> None:
        self.store = store
        self.inspector = inspector
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

    async def add_device(self, device: Device, name: str = "extra") -> Device:
        """Link the account's next device the way provisioning does (through the store)."""
        token, placeholder, provisioning_id = new_token(), new_token(), new_id("p")
        secret = new_token().secret_hash
        await self.store.create_provisioning(provisioning_id, secret, b"eph", self.clock, 60_000)
        link = NewDeviceLink(
            provisioning_id=provisioning_id,
            account_id=device.account_id,
            device_name=name,
            ephemeral_key=b"eph",
            sealed=b"",
            placeholder_key=placeholder.key,
            placeholder_hash=placeholder.secret_hash,
            max_devices=1000,
            now=self.clock,
        )
        device_id = await self.store.approve_provisioning(link)
        await self.store.fetch_provisioning(
            provisioning_id, secret, token.key, token.secret_hash, self.clock
        )
        return Device(device.account_id, device_id, device.username, name)

    async def second_device(self, device: Device) -> Device:
        """Add device 2 to an account."""
        second = await self.add_device(device, "second")
        assert second.device_id == 2
        return second

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

    async def count(self, table: str, **where: object) -> int:
        """Rows of a table of the store (see ``backends.Inspector``)."""
        return self.inspector.count(table, **where)


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The name of the store back end the test runs on."""
    return str(request.param)


@pytest.fixture
def store_backend(backend_kind: str, tmp_path) -> Iterator[Backend]:
    """The back end, with its data in the test's temporary directory (or database)."""
    made = backend(backend_kind, tmp_path)
    try:
        yield made
    finally:
        made.discard()


@pytest.fixture
async def store(store_backend: Backend) -> AsyncIterator[Store]:
    """An open, empty store; closed after the test."""
    opened = store_backend.store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def world(store: Store, store_backend: Backend) -> World:
    bus = LocalBus()
    holder: list[World] = []
    engine = DeliveryService(store, bus, member_cap=5, clock=lambda: holder[0].now())
    holder.append(World(store, store_backend.inspector(), engine, bus))
    return holder[0]
