"""The bus of several server nodes, over core NATS (``nats_url``), with presence in a JetStream
key-value bucket. Besides :mod:`tidings.server.bus.jetstream`, the only module that imports nats.

Routing. Every node keeps the connections it holds in a :class:`~tidings.server.bus.local.LocalBus`
and delivers to them directly. Each frame also goes out once per addressed account on
``tidings.a.<account>`` (and ``tidings.d.<account>.<device>`` for one device); a node subscribes
to the subjects of the accounts and devices it holds a socket of, so NATS forwards a frame only
to the nodes that can use it. The connection is ``no_echo``: a node never hears its own frames.
A node subscribes (and flushes) *before* the connection replays its pending queue, so whatever
is committed after the replay's read reaches it live; the pending rows (in the shared store)
cover everything else, also what a dead node held in memory.

Presence. The bucket ``tidings_presence`` holds ``d.<account>.<device>`` = the node instance
holding the device's socket, and ``n.<instance>`` = that instance's heartbeat, put every
:data:`HEARTBEAT` seconds. An instance is the node's name plus a random boot id, so a restarted
node never vouches for its previous life's sockets. Every node watches the bucket and keeps the
map in memory (``live_elsewhere`` answers without a round trip, as the push decision needs): a
device is live elsewhere when its key names an instance heard from within :data:`NODE_TTL`
seconds. A killed node's devices therefore count as offline (and get pushes) after at most
``NODE_TTL``; the surviving nodes also delete its keys (compare-and-delete on the revision, so
a reconnect elsewhere is never removed).

Replacement. The revision of the put of ``d.<account>.<device>`` orders the connections of one
device across the cluster: after its put, a node publishes ``replace`` with that revision on the
device subject, and a node holding an older connection (lower revision) closes it with the
"replaced" close code. Seeing the key move to a higher revision in the watch does the same, in
case the message was lost across a NATS reconnect. Two simultaneous connects end with the
higher revision alone, whichever node it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from tidings.server.bus.base import Delivery, Subscriber
from tidings.server.bus.local import LocalBus

log = logging.getLogger(__name__)

Address = tuple[str, int]

#: Seconds between an instance's heartbeats.
HEARTBEAT = 1.0
#: Seconds without a heartbeat after which an instance's devices count as offline.
NODE_TTL = 4.0
#: The presence bucket.
BUCKET = "tidings_presence"

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")

# message kinds
_ACCOUNT, _DEVICE, _REPLACE, _REVOKE = 0, 1, 2, 3


class _Frame(msgspec.Struct, array_like=True, omit_defaults=True):
    kind: int
    data: bytes = b""
    conv: str | None = None
    seq: int = 0
    dseq: int = 0
    #: to_accounts: the device of this account that is skipped (0: none)
    skip: int = 0
    #: to_accounts: devices of this account with a delivery of their own
    own: dict[int, tuple[bytes, str | None, int, int]] = {}
    #: replace: the presence revision of the newer connection
    rev: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Frame)


def token(value: str) -> str:
    """``value`` as one subject token (NATS and KV keys take ``[A-Za-z0-9_-]`` safely)."""
    return value if _SAFE.match(value) else "x" + value.encode().hex()


def _delivery(frame: _Frame) -> Delivery:
    return Delivery(frame.data, frame.conv, frame.seq, frame.dseq)


def _pack(delivery: Delivery) -> tuple[bytes, str | None, int, int]:
    return (delivery.data, delivery.conv, delivery.seq, delivery.dseq)


class NatsBus:
    """:class:`~tidings.server.bus.base.Bus` of one node among several sharing a NATS server."""

    def __init__(self, url: str, *, node: str, clock: Callable[[], float] = time.monotonic):
        self.url = url
        #: this process's name in the presence bucket: the node's name and a boot id
        self.instance = f"{token(node)}-{os.urandom(4).hex()}"
        self.local = LocalBus()
        self._clock = clock
        self._nc: NatsClient | None = None
        self._kv: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # what this node holds: address → (subscriber, presence revision, device subscription)
        self._held: dict[Address, tuple[Subscriber, int, Subscription | None]] = {}
        self._accounts: dict[str, tuple[int, Subscription]] = {}
        # subject or presence key → what it names, for the messages and updates that come in
        self._by_subject: dict[str, Address] = {}
        self._account_by_subject: dict[str, str] = {}
        self._by_key: dict[str, Address] = {}
        # the cluster's presence, from the watch: key → (instance, revision); instance → heard at
        self._devices: dict[str, tuple[str, int]] = {}
        self._instances: dict[str, float] = {}
        #: called with the address of a device that connected to another node
        self.on_remote_connect: Callable[[Address], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._nc = nc = await nats.connect(
            [u.strip() for u in self.url.split(",") if u.strip()],  # a cluster: comma-separated
            name=f"tidings-bus-{self.instance}",
            no_echo=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
        js = nc.jetstream()
        try:
            self._kv = await js.key_value(BUCKET)
        except Exception:
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE)
            )
        watcher = await self._kv.watchall()
        ready = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._watch(watcher, ready)))
        await ready  # the current presence is known before the first connection arrives
        await self._kv.put(f"n.{self.instance}", b"")
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        log.info("bus: node %s on %s", self.instance, self.url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._kv is not None:
            with contextlib.suppress(Exception):
                for (account, device), (_, rev, _) in list(self._held.items()):
                    await self._kv.delete(self._key(account, device), last=rev)
                await self._kv.delete(f"n.{self.instance}")
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    # ------------------------------------------------------------------ presence

    @staticmethod
    def _key(account_id: str, device_id: int) -> str:
        return f"d.{token(account_id)}.{device_id}"

    def _alive(self, instance: str) -> bool:
        heard = self._instances.get(instance)
        return heard is not None and self._clock() - heard < NODE_TTL

    def live_elsewhere(self, account_id: str, device_id: int) -> bool:
        """Whether another live node holds a socket of the device (from the watched bucket)."""
        entry = self._devices.get(self._key(account_id, device_id))
        return entry is not None and entry[0] != self.instance and self._alive(entry[0])

    async def _watch(self, watcher: KeyValue.KeyWatcher, ready: asyncio.Future[None]) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the current values
                if not ready.done():
                    ready.set_result(None)
                continue
            try:
                self._seen(entry, initial=not ready.done())
            except Exception:
                log.exception("bus: a presence update failed")

    def _seen(self, entry: KeyValue.Entry, *, initial: bool) -> None:
        key, rev = entry.key, entry.revision or 0
        deleted = entry.operation in ("DEL", "PURGE")
        if key.startswith("n."):
            instance = key[2:]
            if deleted:
                self._instances.pop(instance, None)
            else:
                self._instances[instance] = self._clock()
            return
        if deleted:
            self._devices.pop(key, None)
            return
        instance = (entry.value or b"").decode(errors="replace")
        self._devices[key] = (instance, rev)
        if instance == self.instance or initial:
            return
        address = self._by_key.get(key)
        held = self._held.get(address) if address is not None else None
        if held is not None and 0 < held[1] < rev:
            held[0].replaced()  # the replace message was lost: the watch says the same
        _, account, device = key.split(".", 2)
        if self.on_remote_connect is not None and _SAFE.match(account) and device.isdigit():
            self.on_remote_connect((account, int(device)))

    async def _heartbeat(self) -> None:
        assert self._kv is not None
        key = f"n.{self.instance}"
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._kv.put(key, b"")
                await self._collect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus: presence heartbeat failed: %s", exc)

    async def _collect(self) -> None:
        """Delete the keys of instances that stopped beating (any node may; the revision
        check keeps a device that reconnected meanwhile)."""
        assert self._kv is not None
        now = self._clock()
        dead = {i for i, heard in self._instances.items() if now - heard >= 2 * NODE_TTL}
        for key, (instance, rev) in list(self._devices.items()):
            if instance != self.instance and (instance in dead or instance not in self._instances):
                with contextlib.suppress(Exception):
                    await self._kv.delete(key, last=rev)
        for instance in dead:
            with contextlib.suppress(Exception):
                await self._kv.delete(f"n.{instance}")

    # ------------------------------------------------------------------ Bus

    async def attach(self, subscriber: Subscriber) -> None:
        assert self._nc is not None and self._kv is not None
        account, device = subscriber.account_id, subscriber.device_id
        address = (account, device)
        await self.local.attach(subscriber)
        previous = self._held.get(address)
        device_sub = previous[2] if previous is not None else None
        if device_sub is None:
            subject = f"tidings.d.{token(account)}.{device}"
            self._by_subject[subject] = address
            self._by_key[self._key(account, device)] = address
            device_sub = await self._nc.subscribe(subject, cb=self._on_device)
            count, account_sub = self._accounts.get(account, (0, None))
            if account_sub is None:
                subject = f"tidings.a.{token(account)}"
                self._account_by_subject[subject] = account
                account_sub = await self._nc.subscribe(subject, cb=self._on_account)
            self._accounts[account] = (count + 1, account_sub)
        self._held[address] = (subscriber, 0, device_sub)
        await self._nc.flush()  # subscribed at the server before the replay reads the store
        rev = await self._kv.put(self._key(account, device), self.instance.encode())
        if self._held.get(address, (None,))[0] is subscriber:
            self._held[address] = (subscriber, rev, device_sub)
        await self._publish(f"tidings.d.{token(account)}.{device}", _Frame(_REPLACE, rev=rev))

    async def detach(self, subscriber: Subscriber) -> None:
        await self.local.detach(subscriber)
        address = (subscriber.account_id, subscriber.device_id)
        held = self._held.get(address)
        if held is None or held[0] is not subscriber:
            return
        await self._forget(address, held[1], held[2])

    async def _forget(self, address: Address, rev: int, device_sub: Subscription | None) -> None:
        account, device = address
        del self._held[address]
        self._by_subject.pop(f"tidings.d.{token(account)}.{device}", None)
        self._by_key.pop(self._key(account, device), None)
        count, account_sub = self._accounts.pop(account)
        if count > 1:
            self._accounts[account] = (count - 1, account_sub)
        else:
            self._account_by_subject.pop(f"tidings.a.{token(account)}", None)
        with contextlib.suppress(Exception):
            if device_sub is not None:
                await device_sub.unsubscribe()
            if count <= 1:
                await account_sub.unsubscribe()
        if self._kv is not None and rev:
            with contextlib.suppress(Exception):  # a newer connection elsewhere keeps its key
                await self._kv.delete(self._key(account, device), last=rev)

    async def to_accounts(
        self,
        accounts: Iterable[str],
        delivery: Delivery,
        *,
        skip: tuple[str, int] | None = None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        accounts = list(accounts)
        await self.local.to_accounts(accounts, delivery, skip=skip, own=own)
        for account in accounts:
            frame = _Frame(_ACCOUNT, delivery.data, delivery.conv, delivery.seq, delivery.dseq)
            if skip is not None and skip[0] == account:
                frame.skip = skip[1]
            if own:
                frame.own = {d: _pack(x) for (a, d), x in own.items() if a == account}
            await self._publish(f"tidings.a.{token(account)}", frame)

    async def to_device(self, account_id: str, device_id: int, delivery: Delivery) -> None:
        await self.local.to_device(account_id, device_id, delivery)
        frame = _Frame(_DEVICE, delivery.data, delivery.conv, delivery.seq, delivery.dseq)
        await self._publish(f"tidings.d.{token(account_id)}.{device_id}", frame)

    async def revoke(self, account_id: str, device_id: int) -> None:
        await self.local.revoke(account_id, device_id)
        await self._publish(f"tidings.d.{token(account_id)}.{device_id}", _Frame(_REVOKE))

    def online(self, account_id: str) -> int:
        return self.local.online(account_id)

    # ------------------------------------------------------------------ from other nodes

    async def _publish(self, subject: str, frame: _Frame) -> None:
        assert self._nc is not None
        try:
            await self._nc.publish(subject, _encoder.encode(frame))
        except Exception as exc:  # the pending queue still has it: log, never fail delivery
            log.warning("bus: publishing to %s failed: %s", subject, exc)

    def _decode(self, msg: Msg) -> _Frame | None:
        try:
            return _decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("bus: dropping an undecodable message on %s", msg.subject)
            return None

    async def _on_account(self, msg: Msg) -> None:
        frame = self._decode(msg)
        if frame is None:
            return
        account = self._account_by_subject.get(msg.subject)
        if account is None:
            return
        own = {(account, d): Delivery(*x) for d, x in frame.own.items()}
        await self.local.to_accounts(
            (account,),
            _delivery(frame),
            skip=(account, frame.skip) if frame.skip else None,
            own=own or None,
        )

    async def _on_device(self, msg: Msg) -> None:
        frame = self._decode(msg)
        if frame is None:
            return
        address = self._by_subject.get(msg.subject)
        if address is None or address not in self._held:
            return
        if frame.kind == _DEVICE:
            await self.local.to_device(*address, _delivery(frame))
        elif frame.kind == _REVOKE:
            await self.local.revoke(*address)
        elif frame.kind == _REPLACE:
            subscriber, rev, _ = self._held[address]
            if 0 < rev < frame.rev:
                subscriber.replaced()
