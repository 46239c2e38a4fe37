"""An in-memory server side of the protocol, and a harness that wires engines to it.

The fake server does what frames.py says a server does: gapless seq per conversation,
idempotent Send by message id, a pending queue per device that is replayed after Hello and
trimmed by Ack (and by Hello cursors), delivered/read watermarks per account relayed as
Receipts, Fetch answered from where the member joined, Ping → Pong.

The harness runs devices (an :class:`~tidings.client.engine.Engine` plus a dict model of the
client store) against it with a fake clock, and lets a test drop, duplicate and reorder frames
in either direction, break connections and crash devices at any step.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from tidings.client.core import engine
from tidings.client.core.types import EngineSettings, MessageStatus
from tidings.protocol import (
    Accepted,
    Ack,
    Batch,
    ClientFrame,
    Envelope,
    Error,
    Fetch,
    Hello,
    Ping,
    Pong,
    Read,
    Receipt,
    Rejected,
    Send,
    ServerFrame,
    Synced,
    SystemEvent,
    Watermark,
    Welcome,
    encode,
)
from tidings.protocol.content import Text, encode_content
from tidings.protocol.frames import SystemAction

RANK = {
    MessageStatus.SENDING: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.FAILED: 4,
}

DeviceKey = tuple[str, int]

SETTINGS = EngineSettings()


@dataclass
class FakeConversation:
    id: str
    #: account → seq of the system envelope that made it a member
    members: dict[str, int]
    log: list[Envelope] = field(default_factory=list)
    by_id: dict[uuid.UUID, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeConnection:
    device: DeviceKey
    #: frames on their way to the client
    outgoing: list[ServerFrame] = field(default_factory=list)
    #: frames on their way to the server
    incoming: list[ClientFrame] = field(default_factory=list)
    greeted: bool = False
    open: bool = True


class FakeServer:
    def __init__(self) -> None:
        self.conversations: dict[str, FakeConversation] = {}
        self.devices: dict[DeviceKey, set[tuple[str, int]]] = {}
        self.connections: dict[DeviceKey, FakeConnection] = {}
        #: removed devices: their upgrade is refused with HTTP 401
        self.removed: set[DeviceKey] = set()
        #: admits a device's Send (or not: Rejected rate_limited), like the real server's
        #: SendLimiter.admit(account, device, size); None: no limits
        self.limiter: Callable[[str, int, int], bool] | None = None
        self.ts = 1_000

    # ------------------------------------------------------------------ setup

    def add_device(self, account: str, device: int = 1) -> None:
        self.devices[(account, device)] = set()

    def create(self, conv: str, creator: str, members: list[str]) -> None:
        self.conversations[conv] = FakeConversation(conv, {m: 1 for m in members})
        self._append(conv, creator, 0, uuid.uuid4(), _system("created", creator), "system")

    def add_member(self, conv: str, actor: str, account: str) -> None:
        c = self.conversations[conv]
        c.members[account] = len(c.log) + 1
        payload = _system("member_added", actor, [account])
        self._append(conv, actor, 0, uuid.uuid4(), payload, "system")

    def remove_device(self, device: DeviceKey) -> None:
        """The device is removed: its connection closes with 4401, its upgrades get 401."""
        self.removed.add(device)

    def device_accounts(self, account: str) -> list[DeviceKey]:
        return [key for key in self.devices if key[0] == account]

    # ------------------------------------------------------------------ connections

    def connect(self, device: DeviceKey) -> FakeConnection:
        old = self.connections.get(device)
        if old is not None:
            old.open = False
        conn = FakeConnection(device)
        self.connections[device] = conn
        return conn

    def disconnect(self, device: DeviceKey) -> None:
        conn = self.connections.pop(device, None)
        if conn is not None:
            conn.open = False

    def process(self, conn: FakeConnection, frame: ClientFrame) -> None:
        """Handle one frame from ``conn`` (which must be open)."""
        # Frames really travel as bytes: round-trip them to catch encoding mistakes.
        frame = msgspec.msgpack.decode(encode(frame), type=ClientFrame)
        account, _ = conn.device
        if isinstance(frame, Ping):
            conn.outgoing.append(Pong(n=frame.n))
        elif isinstance(frame, Hello):
            self._hello(conn, frame)
        elif not conn.greeted:
            conn.outgoing.append(Error(code="bad_frame", message="hello first"))
        elif isinstance(frame, Send):
            conn.outgoing.append(self._send(conn.device, frame))
        elif isinstance(frame, Ack):
            self._ack(conn.device, frame.upto)
        elif isinstance(frame, Read):
            c = self.conversations[frame.conv]
            seq = min(frame.seq, len(c.log))
            c.read[account] = max(c.read.get(account, 0), seq)
            c.delivered[account] = max(c.delivered.get(account, 0), seq)
            self._receipt(conn.device, c, account)
        else:
            assert isinstance(frame, Fetch)
            conn.outgoing.append(self._fetch(account, frame))

    def _hello(self, conn: FakeConnection, hello: Hello) -> None:
        account, _ = conn.device
        self._ack(conn.device, hello.cursors)
        conn.greeted = True
        mine = [c for c in self.conversations.values() if account in c.members]
        marks = [
            Watermark(c.id, other, c.delivered.get(other, 0), c.read.get(other, 0))
            for c in mine
            for other in c.members
            if other != account
        ]
        heads = {c.id: len(c.log) for c in mine}
        conn.outgoing.append(
            Welcome(
                version=1,
                account_id=account,
                device_id=conn.device[1],
                server_ts=self.ts,
                heads=heads,
                watermarks=marks,
            )
        )
        by_conv: dict[str, list[Envelope]] = defaultdict(list)
        for conv, seq in sorted(self.devices[conn.device]):
            by_conv[conv].append(self.conversations[conv].log[seq - 1])
        for conv, envelopes in by_conv.items():
            for start in range(0, len(envelopes), 3):  # small batches: more interleavings
                chunk = envelopes[start : start + 3]
                conn.outgoing.append(Batch(conv=conv, envelopes=chunk, head=heads[conv]))
        conn.outgoing.append(Synced())

    def _send(self, device: DeviceKey, frame: Send) -> Accepted | Rejected:
        account, device_id = device
        c = self.conversations.get(frame.conv)
        if c is None or account not in c.members:
            return Rejected(id=frame.id, conv=frame.conv, code="not_member")
        if self.limiter is not None and not self.limiter(account, device_id, len(frame.payload)):
            return Rejected(id=frame.id, conv=frame.conv, code="rate_limited")
        seq = c.by_id.get(frame.id)
        if seq is None:
            seq = self._append(frame.conv, account, device_id, frame.id, frame.payload, "msg")
        env = c.log[seq - 1]
        return Accepted(id=frame.id, conv=frame.conv, seq=seq, ts=env.ts)

    def _append(
        self, conv: str, sender: str, device: int, msg_id: uuid.UUID, payload: bytes, kind: str
    ) -> int:
        c = self.conversations[conv]
        self.ts += 1
        seq = len(c.log) + 1
        env = Envelope(
            conv=conv,
            seq=seq,
            id=msg_id,
            sender=sender,
            sender_device=device,
            ts=self.ts,
            payload=payload,
            kind="system" if kind == "system" else "msg",
        )
        c.log.append(env)
        c.by_id[msg_id] = seq
        for member in c.members:
            for key in self.device_accounts(member):
                if key == (sender, device):
                    continue  # never echoed to the sending device
                self.devices[key].add((conv, seq))
                conn = self.connections.get(key)
                if conn is not None and conn.greeted:
                    conn.outgoing.append(env)
        return seq

    def _ack(self, device: DeviceKey, upto: dict[str, int]) -> None:
        account, _ = device
        pending = self.devices[device]
        for conv, seq in upto.items():
            c = self.conversations[conv]
            seq = min(seq, len(c.log))
            pending -= {(cv, s) for cv, s in pending if cv == conv and s <= seq}
            if seq > c.delivered.get(account, 0):
                c.delivered[account] = seq
                self._receipt(device, c, account)

    def _receipt(self, source: DeviceKey, c: FakeConversation, account: str) -> None:
        receipt = Receipt(
            conv=c.id,
            account=account,
            delivered=c.delivered.get(account, 0),
            read=c.read.get(account, 0),
        )
        for key, conn in self.connections.items():
            if key != source and key[0] in c.members and conn.greeted:
                conn.outgoing.append(receipt)

    def _fetch(self, account: str, frame: Fetch) -> Batch:
        c = self.conversations[frame.conv]
        start = max(frame.after, c.members[account] - 1)
        return Batch(conv=c.id, envelopes=c.log[start : start + frame.limit], head=len(c.log))


def _system(action: SystemAction, actor: str, members: list[str] | None = None) -> bytes:
    return encode(SystemEvent(action=action, actor=actor, members=members or []))


# ----------------------------------------------------------------------------- client side


@dataclass
class StoredMessage:
    conv: str
    seq: int | None
    sender: str
    status: MessageStatus
    history: list[MessageStatus]


class FakeDevice:
    """An engine plus a dict model of what the client store would hold."""

    def __init__(self, harness: Harness, account: str, device: int = 1) -> None:
        self.harness = harness
        self.key: DeviceKey = (account, device)
        self.account = account
        self.messages: dict[uuid.UUID, StoredMessage] = {}
        self.outbox: dict[uuid.UUID, engine.OutboxItem] = {}
        self.cursors: dict[str, int] = {}
        self.marks: dict[str, dict[str, tuple[int, int]]] = {}
        self.read_marks: dict[str, int] = {}
        #: how often each incoming envelope id was handed to the store, and in which order
        self.stored_count: Counter[uuid.UUID] = Counter()
        self.stored_order: dict[str, list[int]] = defaultdict(list)
        self.conn: FakeConnection | None = None
        self.synced = 0
        self.fatal: list[engine.FatalNotice] = []
        self.engine = self._new_engine()

    def _new_engine(self) -> engine.Engine:
        members = {
            cid: frozenset(c.members)
            for cid, c in self.harness.server.conversations.items()
            if self.account in c.members
        }
        restored = engine.Restored(
            cursors=dict(self.cursors),
            outbox=[engine.OutboxItem(i.id, i.conv_id, i.payload) for i in self.outbox.values()],
            members=members,
            watermarks={conv: dict(m) for conv, m in self.marks.items()},
        )
        return engine.Engine(self.account, random.Random(7), restored)

    def crash(self) -> None:
        """Lose everything in memory; keep what was 'persisted'; start again."""
        self.drop_connection()
        self.engine = self._new_engine()
        self.engine.start(self.harness.now)
        self.run()

    def drop_connection(self) -> None:
        if self.conn is not None:
            self.harness.server.disconnect(self.key)
            self.conn = None

    def send_text(self, conv: str, body: str) -> uuid.UUID:
        content = Text(body=body)
        item = engine.OutboxItem(uuid.uuid4(), conv, encode_content(content))
        self.engine.send(item, content, self.harness.server.ts, self.harness.now)
        self.run()
        return item.id

    def run(self) -> None:
        """Apply the engine's effects like the runtime would (store first, then frames)."""
        while effects := self.engine.take_effects():
            for effect in effects:
                self._store(effect)
            for effect in effects:
                self._act(effect)

    def _store(self, effect: engine.Effect) -> None:
        match effect:
            case engine.StoreOutgoing():
                self.outbox[effect.id] = engine.OutboxItem(
                    effect.id, effect.conv_id, effect.payload
                )
                s = MessageStatus.SENDING
                self.messages[effect.id] = StoredMessage(effect.conv_id, None, self.account, s, [s])
            case engine.StoreRetry():
                self.outbox[effect.id] = engine.OutboxItem(
                    effect.id, effect.conv_id, effect.payload
                )
                self._status(effect.id, MessageStatus.SENDING, force=True)
            case engine.StoreIncoming():
                for env in effect.envelopes:
                    assert env.seq > self.cursors.get(effect.conv_id, 0), "stored below the cursor"
                    self.stored_order[effect.conv_id].append(env.seq)
                    if env.id in self.messages:
                        continue  # the store ignores a known id
                    self.stored_count[env.id] += 1
                    own = env.sender == self.account
                    s = MessageStatus.SENT if own else MessageStatus.DELIVERED
                    self.messages[env.id] = StoredMessage(env.conv, env.seq, env.sender, s, [s])
            case engine.AdvanceCursor():
                self.cursors[effect.conv_id] = max(self.cursors.get(effect.conv_id, 0), effect.seq)
            case engine.MarkSent():
                self.outbox.pop(effect.id, None)
                msg = self.messages[effect.id]
                if msg.seq is None:
                    msg.seq = effect.seq
                    self._status(effect.id, effect.status, force=True)
            case engine.MarkFailed():
                self.outbox.pop(effect.id, None)
                self._status(effect.id, MessageStatus.FAILED, force=True)
            case engine.Promote():
                for msg_id, msg in self.messages.items():
                    if msg.conv != effect.conv_id or msg.sender != self.account or msg.seq is None:
                        continue
                    if msg.seq <= effect.read:
                        self._status(msg_id, MessageStatus.READ)
                    elif msg.seq <= effect.delivered:
                        self._status(msg_id, MessageStatus.DELIVERED)
            case engine.StoreWatermark():
                self.marks.setdefault(effect.conv_id, {})[effect.account] = (
                    effect.delivered,
                    effect.read,
                )
            case engine.StoreReadMark():
                self.read_marks[effect.conv_id] = max(
                    self.read_marks.get(effect.conv_id, 0), effect.seq
                )
            case _:
                pass

    def _status(self, msg_id: uuid.UUID, status: MessageStatus, force: bool = False) -> None:
        msg = self.messages[msg_id]
        if force or (msg.status is not MessageStatus.FAILED and RANK[status] > RANK[msg.status]):
            msg.status = status
            msg.history.append(status)

    def _act(self, effect: engine.Effect) -> None:
        server = self.harness.server
        match effect:
            case engine.Transmit():
                if self.conn is not None:
                    self.conn.incoming.append(effect.frame)
            case engine.Connect():
                if self.key in server.removed:
                    self.engine.connect_failed(self.harness.now, "HTTP 401", 4401)
                elif self.harness.server_up:
                    self.conn = server.connect(self.key)
                    self.engine.connected(self.harness.now)
                else:
                    self.engine.connect_failed(self.harness.now, "refused")
            case engine.Disconnect():
                self.drop_connection()
            case engine.RefreshConversation():
                c = server.conversations[effect.conv_id]
                self.engine.members_changed(effect.conv_id, frozenset(c.members))
            case engine.SyncedNotice():
                self.synced += 1
            case engine.FatalNotice():
                self.fatal.append(effect)
            case _:
                pass

    # ------------------------------------------------------------------ network steps

    def to_server(self) -> bool:
        """Deliver the oldest frame on its way to the server."""
        if self.conn is None or not self.conn.incoming:
            return False
        self.harness.server.process(self.conn, self.conn.incoming.pop(0))
        return True

    def to_client(self) -> bool:
        """Deliver the oldest frame on its way to this device."""
        if self.conn is None or not self.conn.outgoing:
            return False
        frame = self.conn.outgoing.pop(0)
        frame = msgspec.msgpack.decode(encode(frame), type=ServerFrame)
        self.engine.receive(frame, self.harness.now)
        self.run()
        return True

    def closed_by_server(self, code: int) -> None:
        """The server closes this device's connection with close code ``code``."""
        if self.conn is not None:
            self.drop_connection()
            self.engine.disconnected(self.harness.now, f"closed ({code})", code)
            self.run()

    def break_connection(self) -> None:
        if self.conn is not None:
            self.drop_connection()
            self.engine.disconnected(self.harness.now, "broken")
            self.run()


class Harness:
    """Devices named ``"alice"`` (device 1 of alice) or ``"alice:2"`` (her second device)."""

    def __init__(self, devices: list[str]) -> None:
        self.server = FakeServer()
        self.server_up = True
        self.now = 100.0
        self.names: dict[DeviceKey, str] = {}
        for name in devices:
            account, _, number = name.partition(":")
            key = (account, int(number or 1))
            self.server.add_device(*key)
            self.names[key] = name
        self.devices: dict[str, FakeDevice] = {}

    def device(self, name: str) -> FakeDevice:
        return self.devices[name]

    def start(self) -> None:
        for key, name in self.names.items():
            dev = FakeDevice(self, *key)
            self.devices[name] = dev
            dev.engine.start(self.now)
            dev.run()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for dev in self.devices.values():
            dev.engine.tick(self.now)
            dev.run()

    def pump(self, limit: int = 100_000) -> None:
        """Deliver every frame in flight (and whatever they cause), without faults."""
        for _ in range(limit):
            moved = False
            for dev in self.devices.values():
                moved |= dev.to_server()
                moved |= dev.to_client()
            if not moved:
                return
        raise AssertionError("the network never went quiet")

    def settle(self) -> None:
        """Let timers run and frames flow until nothing is left to do."""
        for _ in range(200):
            self.pump()
            busy = any(
                dev.engine.outbox or dev.engine.phase is not engine.Phase.LIVE
                for dev in self.devices.values()
            )
            wakeups = [w for d in self.devices.values() if (w := d.engine.next_wakeup())]
            if not busy and all(w - self.now >= SETTINGS.ping_interval - 1 for w in wakeups):
                return
            self.advance(max(0.05, min(wakeups, default=self.now + 1) - self.now))
        raise AssertionError("the system never settled")
