"""Which devices hold a live connection to this node, and when each last connected: a
:class:`~tidings.server.bus.base.Bus` that wraps another and watches attach/detach.

Kept in memory, per node: with one node (the local bus) it is exact. With several nodes
(:class:`~tidings.server.bus.nats.NatsBus`) ``remote`` asks the shared bus whether another live
node holds the device, and the bus reports connects elsewhere to :meth:`connected_elsewhere`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from tidings.server.bus.base import Bus, Delivery, Subscriber

Address = tuple[str, int]


class PresenceBus:
    """Delegates every call to ``inner``; records live devices and connect times."""

    def __init__(
        self,
        inner: Bus,
        clock: Callable[[], float] = time.time,
        *,
        remote: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.inner = inner
        #: whether another node holds a live socket of the device (several nodes only)
        self.remote = remote
        self._clock = clock
        self._live: dict[Address, int] = {}
        #: (account, device) → seconds since the epoch of its last connect
        self.last_connect: dict[Address, float] = {}
        #: called with the address of every device that connects
        self.on_connect: Callable[[Address], None] | None = None

    def is_live(self, account_id: str, device_id: int) -> bool:
        if self._live.get((account_id, device_id), 0) > 0:
            return True
        return self.remote is not None and self.remote(account_id, device_id)

    def connected_elsewhere(self, address: Address) -> None:
        """The device connected to another node: a connect all the same, for push state."""
        self.last_connect[address] = self._clock()
        if self.on_connect is not None:
            self.on_connect(address)

    async def attach(self, subscriber: Subscriber) -> None:
        address = (subscriber.account_id, subscriber.device_id)
        await self.inner.attach(subscriber)
        self._live[address] = self._live.get(address, 0) + 1
        self.last_connect[address] = self._clock()
        if self.on_connect is not None:
            self.on_connect(address)

    async def detach(self, subscriber: Subscriber) -> None:
        address = (subscriber.account_id, subscriber.device_id)
        await self.inner.detach(subscriber)
        count = self._live.get(address, 0) - 1
        if count > 0:
            self._live[address] = count
        else:
            self._live.pop(address, None)

    async def to_accounts(
        self,
        accounts: Iterable[str],
        delivery: Delivery,
        *,
        skip: tuple[str, int] | None = None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        await self.inner.to_accounts(accounts, delivery, skip=skip, own=own)

    async def to_device(self, account_id: str, device_id: int, delivery: Delivery) -> None:
        await self.inner.to_device(account_id, device_id, delivery)

    async def revoke(self, account_id: str, device_id: int) -> None:
        await self.inner.revoke(account_id, device_id)

    def online(self, account_id: str) -> int:
        return self.inner.online(account_id)
