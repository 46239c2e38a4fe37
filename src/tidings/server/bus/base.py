"""The bus: how the delivery service reaches the devices that are connected right now.

The delivery service never waits on a device: it hands each frame to the bus, which passes it
to the subscribers (connections) of the addressed accounts without blocking. Durability is the
store's job: a device that misses a frame (offline, too slow, on another node that died) gets
it from its pending queue on the next connect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import msgspec


class Delivery(msgspec.Struct, frozen=True):
    """An encoded server frame. ``conv``/``seq`` are set for envelopes so a connection that is
    still replaying its pending queue can drop a live copy of something it already sent. (A
    frozen Struct, built in C: one is made for every message and device it goes to.)"""

    data: bytes
    conv: str | None = None
    seq: int = 0
    #: set for a DeviceEnvelope, for the same reason
    dseq: int = 0


class Subscriber(Protocol):
    """A live connection of one device."""

    @property
    def account_id(self) -> str: ...

    @property
    def device_id(self) -> int: ...

    def deliver(self, delivery: Delivery) -> None:
        """Queue a frame without blocking. A subscriber that cannot keep up drops itself."""

    def replaced(self) -> None:
        """A newer connection of the same device took over; this one must close."""

    def revoked(self) -> None:
        """The device was removed (its token is dead); this connection must close."""


class Bus(Protocol):
    async def attach(self, subscriber: Subscriber) -> None:
        """Route the device's frames to ``subscriber``; an older subscriber of the same device
        is told it was replaced."""

    async def detach(self, subscriber: Subscriber) -> None:
        """Stop routing to ``subscriber`` (no-op if a newer one replaced it)."""

    async def to_accounts(
        self,
        accounts: Iterable[str],
        delivery: Delivery,
        *,
        skip: tuple[str, int] | None = None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        """Deliver to every connected device of ``accounts`` except the device ``skip``
        (``(account_id, device_id)``); a device named in ``own`` gets its own delivery
        instead (an envelope with its own ciphertext)."""

    async def to_device(self, account_id: str, device_id: int, delivery: Delivery) -> None:
        """Deliver to one device if it is connected."""

    async def revoke(self, account_id: str, device_id: int) -> None:
        """Close the connection of a removed device, if it has one (close code 4401)."""

    def online(self, account_id: str) -> int:
        """How many devices of the account are connected to this node."""
