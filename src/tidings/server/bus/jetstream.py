"""Channel fan-out through NATS JetStream (``nats_url``): the only module that imports nats.

* The node that accepts a post appends it to the channel's log (the source of truth), then its
  :class:`~tidings.server.channels.fanout.LogPump` ("publish") publishes it to the stream
  ``stream`` (subject ``<stream>.posts``), with ``Nats-Msg-Id`` = channel and seq so a post
  published again after a crash is dropped by the stream's duplicate window. The poster's
  answer waits for the stream's ack: the post is then durable twice over.
* Every node has a durable pull consumer named after the node. It hands each post to its
  :class:`~tidings.server.channels.fanout.ChannelDeliverer` (the subscribers connected to
  this node) and acks it after; a node that was down resumes from its consumer's position.
  A node's first consumer starts at new posts (its connected subscribers are none yet).
* A change of a channel's members is announced on ``<stream>.members`` (core NATS), so every
  node drops its cached subscriber list of that channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from tidings.protocol.channels import Post
from tidings.server.channels.fanout import ChannelDeliverer, LogPump
from tidings.server.channels.store import ChannelStore

log = logging.getLogger(__name__)

#: Messages fetched from the consumer at once.
FETCH_BATCH = 256
#: Seconds JetStream keeps the ids of published posts to drop a repeat.
DUPLICATE_WINDOW = 120.0
#: Seconds an unacked post waits before the consumer hands it out again.
ACK_WAIT = 30.0

_post_decoder = msgspec.msgpack.Decoder(Post)
_encoder = msgspec.msgpack.Encoder()


class JetStreamFanout:
    """:class:`~tidings.server.channels.fanout.FanoutQueue` on a JetStream stream."""

    def __init__(
        self,
        url: str,
        store: ChannelStore,
        deliverer: ChannelDeliverer,
        *,
        node: str,
        stream: str = "tidings_channels",
    ) -> None:
        self.url = url
        self.store = store
        self.deliverer = deliverer
        self.node = node
        self.stream = stream
        self.subject = f"{stream}.posts"
        self.members_subject = f"{stream}.members"
        self.pump = LogPump(store, "publish", self._publish)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._nc = nc = await nats.connect(
            self.url, name=f"tidings-{self.node}", max_reconnect_attempts=-1
        )
        self._js = js = nc.jetstream()
        config = StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW,
            max_age=7 * 86_400.0,
        )
        try:
            await js.add_stream(config)
        except Exception:  # exists (perhaps with other settings): keep it
            await js.stream_info(self.stream)
        subscription = await js.pull_subscribe(
            self.subject,
            durable=self.node,
            stream=self.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ACK_WAIT,
                max_ack_pending=FETCH_BATCH * 4,
            ),
        )
        await nc.subscribe(self.members_subject, cb=self._members_changed)
        self._consumer = asyncio.create_task(self._consume(subscription))
        await self.pump.start()

    async def publish(self, pos: int, post: Post) -> None:
        await self.pump.notify(pos, post)

    def members_changed(self, channel: str) -> None:
        """Tell every node (this one too) that ``channel``'s members changed."""
        self.deliverer.invalidate(channel)
        if self._nc is not None and self._nc.is_connected:
            task = asyncio.get_running_loop().create_task(
                self._nc.publish(self.members_subject, channel.encode())
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _members_changed(self, msg: Msg) -> None:
        self.deliverer.invalidate(msg.data.decode(errors="replace"))

    async def _publish(self, post: Post) -> None:
        assert self._js is not None
        await self._js.publish(
            self.subject,
            _encoder.encode(post),
            headers={"Nats-Msg-Id": f"{post.channel}:{post.seq}"},
        )

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=1.0)
            except NatsTimeout:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fetching channel posts from JetStream failed")
                await asyncio.sleep(0.5)
                continue
            for msg in messages:
                try:
                    post = _post_decoder.decode(msg.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.warning("dropping an undecodable message of %s", self.subject)
                    await msg.term()
                    continue
                await self.deliverer.deliver(post)
                await msg.ack()

    async def stop(self) -> None:
        await self.pump.stop()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
