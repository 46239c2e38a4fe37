"""Push for channel posts: only subscribers who chose ``all`` (channels default to ``none``:
no wake-ups at all), only devices that are offline, and at most one wake per device per
``interval`` seconds, however busy the channel. Decided once per post, on the node that
accepted it; never waits on anything (a task per post)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tidings.protocol.channels import Post
from tidings.server.channels.store import ChannelStore
from tidings.server.push.provider import Priority, Wake, WakeKind
from tidings.server.push.service import PushService, to_registration

log = logging.getLogger(__name__)

#: Default seconds between two channel wakes of one device.
DEFAULT_INTERVAL = 300.0


class WakeGate:
    """At most one wake per device per ``interval`` seconds. A device's last wake is forgotten
    once ``interval`` has passed (it no longer holds anything back), so the memory held is
    bounded by the devices woken in the last ``interval``, not by every device ever woken."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[tuple[str, int], float] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._last)

    def admit(self, address: tuple[str, int], now: float) -> bool:
        """True (and remembered) when ``address`` may be woken at ``now``."""
        last = self._last.get(address)
        if last is not None and now - last < self.interval:
            return False
        self._last[address] = now
        if len(self._last) >= self._sweep_at:
            self._sweep(now)
        return True

    def _sweep(self, now: float) -> None:
        self._last = {a: t for a, t in self._last.items() if now - t < self.interval}
        # amortized: the next sweep when the map has doubled since this one
        self._sweep_at = max(1024, 2 * len(self._last))


class ChannelPush:
    def __init__(
        self,
        store: ChannelStore,
        push: PushService,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.push = push
        self.interval = interval
        self._clock = clock
        self._gate = WakeGate(interval)
        self._tasks: set[asyncio.Task[None]] = set()
        self.submitted = 0
        self.limited = 0

    def posted(self, post: Post) -> None:
        task = asyncio.get_running_loop().create_task(self._wake(post))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, post: Post) -> None:
        try:
            targets = await self.store.channel_push_targets(post.channel)
            now = self._clock()
            for stored in targets:
                address = (stored.account_id, stored.device_id)
                if stored.account_id == post.author or self.push.presence.is_live(*address):
                    continue
                if not self._gate.admit(address, now):
                    self.limited += 1
                    continue
                self.submitted += 1
                wake = Wake(
                    WakeKind.ALERT,
                    Priority.HIGH,
                    conversation_hint=self.push.hint(stored.account_id, post.channel),
                    counter=1,
                )
                self.push.dispatcher.submit(to_registration(stored), wake)
        except Exception:
            log.exception("push: deciding channel wakes failed")

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
