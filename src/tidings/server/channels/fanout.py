"""Fan-out of channel posts: the log is the source of truth, the queue is rebuilt from it.

Every post is appended once to its channel's log (``channel_posts``, with a global position
``pos``) before the poster gets its answer. Then a :class:`LogPump` walks the log in position
order and hands each post to a sink, storing how far it got (``channel_fanout``). After a crash
it resumes from the stored position: a post appended but not yet handed on is handed on after
the restart; one handed on twice (the position is stored a moment after) is dropped by the
per-channel seq check of :class:`ChannelDeliverer` and, across restarts, by the clients'
cursors. So nothing is lost and nobody stores a post twice.

Two queues use it (same semantics, same tests):

* :class:`LocalFanout`, the embedded default: the pump's sink is the deliverer itself.
* :class:`tidings.server.bus.jetstream.JetStreamFanout` (``nats_url``): the pump's sink
  publishes to a JetStream stream; every node's durable consumer hands the posts to its own
  deliverer, and a node that was down resumes from its consumer's position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tidings.protocol import encode
from tidings.protocol.channels import Post
from tidings.protocol.frames import ChannelPosted
from tidings.server.bus import Bus, Delivery
from tidings.server.channels.store import ChannelStore

log = logging.getLogger(__name__)

#: Posts read from the log at once when catching up.
LOG_PAGE = 256
#: Seconds between writes of a pump's position (a crash costs at most this much re-handing).
POSITION_FLUSH = 0.2
#: Seconds a node trusts its cached subscriber list of a channel it did not change itself.
SUBSCRIBERS_TTL = 2.0


class FanoutQueue(Protocol):
    """Where a freshly appended post goes."""

    async def start(self) -> None: ...

    async def publish(self, pos: int, post: Post) -> None:
        """Queue the post at log position ``pos``; returns once it is queued durably (the
        embedded queue: the log is the durable part; JetStream: the stream has it)."""

    def members_changed(self, channel: str) -> None:
        """``channel``'s members changed: cached subscriber lists must go (on every node)."""

    async def stop(self) -> None: ...


class ChannelDeliverer:
    """Hands a post to every subscriber connected to this node, through the bus."""

    def __init__(
        self, store: ChannelStore, bus: Bus, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.bus = bus
        self._clock = clock
        self._subscribers: dict[str, tuple[float, list[str]]] = {}
        #: the highest seq delivered per channel by this process (drops a re-handed post)
        self._delivered: dict[str, int] = {}
        #: posts delivered, and subscribers a post was offered to, in total
        self.posts = 0
        self.offered = 0

    def invalidate(self, channel: str) -> None:
        """The channel's members changed on this node."""
        self._subscribers.pop(channel, None)

    async def subscribers(self, channel: str) -> list[str]:
        cached = self._subscribers.get(channel)
        now = self._clock()
        if cached is not None and now - cached[0] < SUBSCRIBERS_TTL:
            return cached[1]
        accounts = await self.store.subscriber_ids(channel)
        self._subscribers[channel] = (now, accounts)
        return accounts

    async def deliver(self, post: Post) -> None:
        if post.seq <= self._delivered.get(post.channel, 0):
            return
        self._delivered[post.channel] = post.seq
        accounts = await self.subscribers(post.channel)
        # Encoded once for every subscriber; conv/seq let a connection still replaying hold it.
        delivery = Delivery(encode(ChannelPosted(post=post)), post.channel, post.seq)
        await self.bus.to_accounts(accounts, delivery)
        self.posts += 1
        self.offered += len(accounts)


class LogPump:
    """Walks the log from a stored position and hands every post to ``sink`` in log order."""

    def __init__(
        self, store: ChannelStore, name: str, sink: Callable[[Post], Awaitable[None]]
    ) -> None:
        self.store = store
        self.name = name
        self.sink = sink
        self.position = 0
        self._stored = 0
        self._hints: dict[int, Post] = {}
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.position = self._stored = await self.store.fanout_position(self.name)
        self._task = asyncio.create_task(self._run())
        self._flusher = asyncio.create_task(self._flush_forever())
        self._wake.set()  # catch up with whatever the log has beyond the stored position

    def notify(self, pos: int, post: Post) -> asyncio.Future[None]:
        """A post was appended at ``pos``; the future completes once it is handed on."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if pos <= self.position:
            future.set_result(None)
            return future
        self._hints[pos] = post
        self._waiters.append((pos, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel fan-out %s failed; retrying from the log", self.name)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _drain(self) -> None:
        while True:
            following = self._hints.pop(self.position + 1, None)
            if following is not None:
                batch = [(self.position + 1, following)]
            else:
                batch = await self.store.log_after(self.position, LOG_PAGE)
                if not batch:
                    self._hints = {p: h for p, h in self._hints.items() if p > self.position}
                    return
            for pos, post in batch:
                self._hints.pop(pos, None)
                await self.sink(post)
                self.position = pos
            self._release()

    def _release(self) -> None:
        waiting = []
        for pos, future in self._waiters:
            if pos <= self.position:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((pos, future))
        self._waiters = waiting

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(POSITION_FLUSH)
            await self.flush()

    async def flush(self) -> None:
        if self.position > self._stored:
            position = self.position
            try:
                await self.store.set_fanout_position(self.name, position)
            except Exception:
                log.exception("storing the fan-out position of %s failed", self.name)
                return
            self._stored = max(self._stored, position)

    async def stop(self) -> None:
        for task in (self._task, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.flush()


class LocalFanout:
    """The embedded queue: one pump from the log straight to this node's deliverer."""

    def __init__(self, store: ChannelStore, deliverer: ChannelDeliverer) -> None:
        self.deliverer = deliverer
        self.pump = LogPump(store, "local", deliverer.deliver)

    def members_changed(self, channel: str) -> None:
        self.deliverer.invalidate(channel)

    async def start(self) -> None:
        await self.pump.start()

    async def publish(self, pos: int, post: Post) -> None:
        # The log is the durable queue: the pump hands the post on without waiting here.
        self.pump.notify(pos, post)

    async def stop(self) -> None:
        await self.pump.stop()
