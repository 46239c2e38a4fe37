"""The in-process bus of a single-node server: a dictionary of live connections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tidings.server.bus.base import Delivery, Subscriber


class LocalBus:
    """:class:`~tidings.server.bus.base.Bus` for one process: account → device → subscriber."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[int, Subscriber]] = {}

    async def attach(self, subscriber: Subscriber) -> None:
        devices = self._routes.setdefault(subscriber.account_id, {})
        previous = devices.get(subscriber.device_id)
        devices[subscriber.device_id] = subscriber
        if previous is not None and previous is not subscriber:
            previous.replaced()

    async def detach(self, subscriber: Subscriber) -> None:
        devices = self._routes.get(subscriber.account_id)
        if devices is None or devices.get(subscriber.device_id) is not subscriber:
            return
        del devices[subscriber.device_id]
        if not devices:
            del self._routes[subscriber.account_id]

    async def to_accounts(
        self,
        accounts: Iterable[str],
        delivery: Delivery,
        *,
        skip: tuple[str, int] | None = None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        routes = self._routes
        for account in accounts:
            devices = routes.get(account)
            if devices is None:
                continue
            # A copy: delivering may make a subscriber detach itself.
            for device_id, subscriber in list(devices.items()):
                if skip is not None and skip[1] == device_id and skip[0] == account:
                    continue
                if own:
                    subscriber.deliver(own.get((account, device_id), delivery))
                else:
                    subscriber.deliver(delivery)

    async def to_device(self, account_id: str, device_id: int, delivery: Delivery) -> None:
        subscriber = self._routes.get(account_id, {}).get(device_id)
        if subscriber is not None:
            subscriber.deliver(delivery)

    async def revoke(self, account_id: str, device_id: int) -> None:
        devices = self._routes.get(account_id)
        subscriber = devices.pop(device_id, None) if devices is not None else None
        if devices is not None and not devices:
            del self._routes[account_id]
        if subscriber is not None:
            subscriber.revoked()

    def online(self, account_id: str) -> int:
        return len(self._routes.get(account_id, ()))
