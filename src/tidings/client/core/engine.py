"""The sans-I/O core of the client: delivery state machine of one device.

Events go in as method calls (:meth:`Engine.connected`, :meth:`Engine.receive`,
:meth:`Engine.send`, :meth:`Engine.tick` …, each with the current monotonic time ``now`` in
seconds); effects come out of :meth:`Engine.take_effects` in the order they must be applied, and
:meth:`Engine.next_wakeup` says when :meth:`Engine.tick` wants to run next. The engine never
touches a socket, a clock, a thread or the store: the runtime does, and tests drive it directly.

What it guarantees (docs/architecture.md):

- An outgoing message is persisted (:class:`StoreOutgoing`) before its ``Send`` frame, stays in
  the outbox until ``Accepted``/``Rejected``, and is resent with the same id after every
  (re)connect, after a send timeout and after a transient ``Error`` (jittered exponential
  backoff, capped at :attr:`EngineSettings.retry_cap`). A ``Rejected`` with a transient code
  (:data:`~tidings.protocol.errors.TRANSIENT_SEND_ERRORS`: ``rate_limited``, ``quota_exceeded``
  …) is a wait, not a refusal: the message stays ``sending`` and is sent again after the
  backoff (``quota_exceeded``: after the longest one), with a :class:`SendDeferred` notice.
- A conversation's own messages are stored in the order they were written, even when the server
  refuses one for a while: they are pipelined (each goes out at once), but a transient refusal
  (``Rejected`` or ``Error``) *blocks* the conversation. Then only its first unanswered message
  (the *probe*, in outbox order) is sent, after the backoff, again and again until it is
  accepted; every later message of the conversation waits: new ones, and the followers that
  were already on their way (refused meanwhile). Once the probe is accepted (or fails for good)
  the rest goes again in outbox order, pipelined. A probe that was on its way before the refusal
  and was never refused itself proves nothing when it is accepted (the server may still be
  holding the sender): the next message becomes the probe instead, so a slow store answering
  its predecessors one by one does not set off a burst per answer. The server's hold and order
  gate (:mod:`tidings.server.sendlimits`) refuse the followers already in flight, so none of
  them is stored before the refused one. A new connection starts over: the whole outbox goes
  again in order.
- Incoming envelopes are released to the store in seq order, each once: duplicates (seq at or
  below the conversation cursor) are dropped, envelopes above a gap are held and the gap is
  fetched. A ``Batch`` that starts at or below the gap answers the ``Fetch``; the seqs it
  leaves out are not for this device (sent before it joined) and the cursor moves past them.
  ``Ack`` watermarks follow the store writes and are batched.
- Own statuses only move forward: ``Accepted`` gives ``sent`` (or better, if the receipts
  already cover the seq) and :class:`Promote` raises statuses to the minimum watermark of every
  other member.
- Keepalive: a ``Ping`` every :attr:`EngineSettings.ping_interval`;
  :attr:`EngineSettings.dead_after` seconds without any frame means the connection is dead.
  Reconnects back off from :attr:`EngineSettings.reconnect_base` to
  :attr:`EngineSettings.reconnect_cap`, with jitter from the injected random generator.
- Phases change only along :data:`TRANSITIONS`, through one guarded method. A frame or event
  that would need an unlisted transition (a second ``Welcome``, ``Synced`` before ``Welcome``)
  is a protocol error of the peer: it is ignored and reported as a :class:`ProtocolViolation`
  effect (the runtime logs it), never raised, so a misbehaving server cannot crash a client.
- A connection closed with a fatal close code (:mod:`tidings.protocol.close`: 4401 device
  removed or token invalid, 4409 replaced by a newer connection, 4426 update needed), or a
  REST call answered 401 (:meth:`Engine.unauthorized`), ends in :attr:`Phase.CLOSED_FATAL`:
  terminal, no reconnect, and the :class:`ConnectionNotice` carries the close code and the
  reason the user is told.

The runtime must apply every store effect of one :meth:`take_effects` batch (in one
transaction) before it transmits that batch's frames: an ``Ack`` then never precedes the write
it acknowledges.
"""

from __future__ import annotations

import enum
import heapq
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from tidings.protocol import (
    MAX_BATCH,
    Accepted,
    Ack,
    Batch,
    ClientFrame,
    DeviceEnvelope,
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
    Watermark,
    Welcome,
)
from tidings.protocol.close import FATAL_REASONS, CloseCode, is_fatal
from tidings.protocol.content import Content
from tidings.protocol.errors import TRANSIENT_SEND_ERRORS, ErrorCode

from .types import EngineSettings, MessageStatus

#: unanswered Fetches after which a gap counts as unavailable to this device
FETCH_TRIES = 3
#: seconds an Ack may wait so that several envelopes share one frame
ACK_DELAY = 0.05
#: envelopes after which an Ack goes out at once
ACK_EVERY = 256


def backoff(attempt: int, rng: random.Random, base: float, cap: float) -> float:
    """Delay before attempt ``attempt + 1``: exponential in ``attempt`` (≥ 1), capped, with
    "equal jitter" (half fixed, half random) so that clients do not retry in lockstep."""
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 30))
    return ceiling / 2 + rng.random() * ceiling / 2


class Phase(enum.Enum):
    """Connection phase; the allowed changes are :data:`TRANSITIONS`::

    IDLE        --start---------------------------------------------> CONNECTING
    CONNECTING  --connected-----------------------------------------> HANDSHAKE
    CONNECTING  --connect_failed------------------------------------> OFFLINE
    HANDSHAKE   --Welcome-------------------------------------------> REPLAY
    REPLAY      --Synced--------------------------------------------> LIVE
    HANDSHAKE, REPLAY, LIVE
                --disconnected / 60 s silence / no Welcome in 20 s--> OFFLINE
    OFFLINE     --tick at the backoff deadline----------------------> CONNECTING
    any but CLOSED_FATAL
                --stop (background, close)--------------------------> IDLE
    any but CLOSED_FATAL
                --fatal close code, HTTP 401------------------------> CLOSED_FATAL
    """

    IDLE = "idle"
    OFFLINE = "offline"  # waiting for the reconnect timer
    CONNECTING = "connecting"  # Connect emitted; the runtime reports connected/connect_failed
    HANDSHAKE = "handshake"  # Hello sent, waiting for Welcome
    REPLAY = "replay"  # Welcome received, the pending queue is being replayed
    LIVE = "live"  # Synced received
    CLOSED_FATAL = "closed_fatal"  # a fatal close code or HTTP 401: terminal, no reconnect


#: phases in which a socket is open
_OPEN = frozenset({Phase.HANDSHAKE, Phase.REPLAY, Phase.LIVE})
#: phases in which the server has greeted us: Send/Read/Fetch/Ack may go out
_WELCOMED = frozenset({Phase.REPLAY, Phase.LIVE})

#: Every allowed phase change (the diagram in :class:`Phase`); :meth:`Engine._enter` refuses
#: the rest. Staying in a phase is not a transition either.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset({Phase.CONNECTING, Phase.CLOSED_FATAL}),
    Phase.CONNECTING: frozenset({Phase.HANDSHAKE, Phase.OFFLINE, Phase.IDLE, Phase.CLOSED_FATAL}),
    Phase.HANDSHAKE: frozenset({Phase.REPLAY, Phase.OFFLINE, Phase.IDLE, Phase.CLOSED_FATAL}),
    Phase.REPLAY: frozenset({Phase.LIVE, Phase.OFFLINE, Phase.IDLE, Phase.CLOSED_FATAL}),
    Phase.LIVE: frozenset({Phase.OFFLINE, Phase.IDLE, Phase.CLOSED_FATAL}),
    Phase.OFFLINE: frozenset({Phase.CONNECTING, Phase.IDLE, Phase.CLOSED_FATAL}),
    Phase.CLOSED_FATAL: frozenset(),
}


# ----------------------------------------------------------------------------- effects


class _Effect(msgspec.Struct, frozen=True, gc=False):
    """An effect: immutable, and made several times per message (a Send, its row, its
    Accepted, a cursor move). A frozen dataclass sets each field through
    ``object.__setattr__``; a Struct is built in C, and holds no reference back to anything
    that holds it, so the cyclic garbage collector need not track it."""


class Connect(_Effect, frozen=True):
    """Open a WebSocket connection, then call ``connected`` or ``connect_failed``."""


class Disconnect(_Effect, frozen=True):
    """Close the current connection. The engine already counts it as closed."""

    reason: str


class Transmit(_Effect, frozen=True):
    frame: ClientFrame


class StoreOutgoing(_Effect, frozen=True):
    """Persist a new own message as ``sending`` together with its outbox row."""

    id: uuid.UUID
    conv_id: str
    payload: bytes
    content: Content
    created_at: int


class StoreRetry(_Effect, frozen=True):
    """A failed message goes back to ``sending`` and into the outbox."""

    id: uuid.UUID
    conv_id: str
    payload: bytes


class StoreIncoming(_Effect, frozen=True):
    """Persist envelopes of one conversation (seq order, none at or below the old cursor).
    An envelope whose id is already stored is ignored by the store."""

    conv_id: str
    envelopes: tuple[Envelope, ...]


class StoreDeviceEnvelope(_Effect, frozen=True):
    """Persist (decrypt and take in) a message to this device alone; acked with
    ``Ack.device_upto`` once stored."""

    envelope: DeviceEnvelope


class AdvanceCursor(_Effect, frozen=True):
    """Every seq of ``conv_id`` up to ``seq`` is stored (or unavailable to this device)."""

    conv_id: str
    seq: int


class MarkSent(_Effect, frozen=True):
    """The server stored own message ``id`` as ``seq``; drop it from the outbox."""

    id: uuid.UUID
    conv_id: str
    seq: int
    ts: int
    status: MessageStatus


class MarkFailed(_Effect, frozen=True):
    """The server refused own message ``id`` for good; drop it from the outbox."""

    id: uuid.UUID
    code: str


class SendDeferred(_Effect, frozen=True):
    """The server asked to send own message ``id`` again later (``code``: ``rate_limited``,
    ``quota_exceeded`` …); it stays ``sending`` and goes again in ``retry_in`` seconds."""

    id: uuid.UUID
    code: str
    retry_in: float


class Promote(_Effect, frozen=True):
    """Own messages of ``conv_id`` with seq ≤ ``delivered`` are at least delivered, with
    seq ≤ ``read`` read (never lower a status)."""

    conv_id: str
    delivered: int
    read: int


class StoreWatermark(_Effect, frozen=True):
    """Persist another member's watermarks."""

    conv_id: str
    account: str
    delivered: int
    read: int


class StoreReadMark(_Effect, frozen=True):
    """This account has read ``conv_id`` up to ``seq`` (here or on another device)."""

    conv_id: str
    seq: int


class RefreshConversation(_Effect, frozen=True):
    """Fetch the conversation's info and members (REST), then call ``members_changed``."""

    conv_id: str


class ConnectionNotice(_Effect, frozen=True):
    """The connection phase changed (for ConnectionChanged events)."""

    phase: Phase
    retry_in: float | None
    error: str | None
    #: the close code that ended the connection for good (in CLOSED_FATAL)
    code: int | None = None


class FatalNotice(_Effect, frozen=True):
    """The connection ended for good (:attr:`Phase.CLOSED_FATAL`): ``code`` is the close code
    (HTTP 401 counts as 4401) and ``reason`` what the user is told."""

    code: int
    reason: str


class ProtocolViolation(_Effect, frozen=True):
    """An event that needs a transition :data:`TRANSITIONS` does not list: it was ignored."""

    event: str
    phase: Phase


class SyncedNotice(_Effect, frozen=True):
    """The replay after a (re)connect is complete."""


StoreEffect = (
    StoreOutgoing
    | StoreRetry
    | StoreIncoming
    | StoreDeviceEnvelope
    | AdvanceCursor
    | MarkSent
    | MarkFailed
    | Promote
    | StoreWatermark
    | StoreReadMark
)
Effect = (
    Connect
    | Disconnect
    | Transmit
    | StoreEffect
    | RefreshConversation
    | ConnectionNotice
    | FatalNotice
    | ProtocolViolation
    | SyncedNotice
    | SendDeferred
)


# ----------------------------------------------------------------------------- state


@dataclass(slots=True)
class OutboxItem:
    """A message waiting for the server's answer. ``due`` is when to (re)send it."""

    id: uuid.UUID
    conv_id: str
    payload: bytes
    attempts: int = 0
    due: float = 0.0
    #: the server refused it for now (a transient Rejected or Error) since it last went out
    #: with the rest of its conversation
    refused: bool = False


@dataclass(slots=True)
class _Gap:
    """An outstanding Fetch: we asked for seqs above ``after`` and want all up to ``upto``."""

    after: int
    upto: int
    deadline: float
    tries: int


@dataclass(frozen=True, slots=True)
class Restored:
    """What the engine needs from the store at startup."""

    cursors: Mapping[str, int]
    outbox: Iterable[OutboxItem]
    #: conversation → member account ids (conversations whose members are known)
    members: Mapping[str, frozenset[str]]
    #: conversation → account → (delivered, read) of other members
    watermarks: Mapping[str, Mapping[str, tuple[int, int]]]


_NOTHING_RESTORED = Restored(cursors={}, outbox=(), members={}, watermarks={})


class Engine:
    """Delivery state machine of one device. See the module docstring."""

    def __init__(
        self,
        account_id: str,
        rng: random.Random,
        restored: Restored = _NOTHING_RESTORED,
        settings: EngineSettings | None = None,
    ) -> None:
        self.account_id = account_id
        self.settings = settings or EngineSettings()
        self.phase = Phase.IDLE
        #: the close code that ended the connection for good (in CLOSED_FATAL)
        self.fatal_code: int | None = None
        self._rng = rng
        self._effects: list[Effect] = []
        self.cursors: dict[str, int] = dict(restored.cursors)
        self.outbox: dict[uuid.UUID, OutboxItem] = {i.id: i for i in restored.outbox}
        self._due: list[tuple[float, int, uuid.UUID]] = []  # heap over outbox due times
        self._due_tiebreak = 0
        #: blocked conversation → its probe: the one message of it that may be sent
        self._blocked: dict[str, uuid.UUID] = {}
        self.members: dict[str, frozenset[str]] = dict(restored.members)
        self._marks: dict[str, dict[str, tuple[int, int]]] = {
            conv_id: dict(marks) for conv_id, marks in restored.watermarks.items()
        }
        self._promoted: dict[str, tuple[int, int]] = {}
        for conv_id in self.members:
            self._promoted[conv_id] = self._others_minimum(conv_id)
        self._held: dict[str, dict[int, Envelope | None]] = {}
        self._gaps: dict[str, _Gap] = {}
        self._refreshing: set[str] = set()
        self._unacked: dict[str, int] = {}
        self._unacked_count = 0
        self._ack_due: float | None = None
        #: highest dseq of DeviceEnvelopes handed to the store, and the highest acked
        self._device_stored = 0
        self._device_acked = 0
        self._reads: dict[str, int] = {}
        self._heads: dict[str, int] = {}
        self._reconnect_attempts = 0
        self._reconnect_at = 0.0
        self._last_rx = 0.0
        self._last_ping = 0.0
        self._connected_at = 0.0
        self._pings = 0

    # ------------------------------------------------------------------ output

    def take_effects(self) -> list[Effect]:
        """Effects produced since the last call, in the order they must be applied."""
        effects, self._effects = self._effects, []
        return effects

    def next_wakeup(self) -> float | None:
        """When :meth:`tick` must run next (monotonic seconds), or None if nothing is timed."""
        times: list[float] = []
        settings = self.settings
        if self.phase is Phase.OFFLINE:
            times.append(self._reconnect_at)
        if self.phase in _OPEN:
            times += (self._last_ping + settings.ping_interval, self._last_rx + settings.dead_after)
        if self.phase is Phase.HANDSHAKE:
            times.append(self._connected_at + settings.handshake_timeout)
        if self.phase in _WELCOMED:
            self._drop_stale_due()
            if self._due:
                times.append(self._due[0][0])
            times += (gap.deadline for gap in self._gaps.values())
            if self._ack_due is not None:
                times.append(self._ack_due)
        return min(times, default=None)

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Begin connecting (also: come back to the foreground)."""
        if self.phase is Phase.IDLE:
            self._reconnect_attempts = 0
            self._open(now)

    def stop(self) -> None:
        """Close the connection and stay offline until :meth:`start` (background, close).
        After a fatal close there is nothing left to stop."""
        if self.phase is Phase.CLOSED_FATAL:
            return
        if self.phase is not Phase.IDLE:
            self._close_connection("stopped")
            self._enter(Phase.IDLE, "stop")
        self._notice(None, None)

    def connected(self, now: float) -> None:
        """The runtime opened the socket asked for by :class:`Connect`."""
        if not self._enter(Phase.HANDSHAKE, "connected"):
            return
        self._last_rx = self._last_ping = self._connected_at = now
        self._send(Hello(cursors=dict(self.cursors)))

    def connect_failed(self, now: float, error: str, code: int | None = None) -> None:
        """The connection asked for by :class:`Connect` could not be opened; ``code`` is a
        close code when the server's answer says retrying cannot help (HTTP 401: 4401)."""
        if self.phase is not Phase.CONNECTING:
            self._violation("connect_failed")
        elif is_fatal(code):
            assert code is not None  # is_fatal says so
            self._fatal(code)
        else:
            self._go_offline(now, error)

    def disconnected(self, now: float, error: str, code: int | None = None) -> None:
        """The open connection closed with close code ``code`` (the engine ignores this when
        it closed it itself). A fatal code ends in :attr:`Phase.CLOSED_FATAL`."""
        if self.phase not in _OPEN:
            return
        if is_fatal(code):
            assert code is not None  # is_fatal says so
            self._fatal(code)
        else:
            self._go_offline(now, error)

    def unauthorized(self) -> None:
        """A REST call was answered 401: the device was removed or its token is invalid."""
        if self.phase is not Phase.CLOSED_FATAL:
            self._fatal(CloseCode.UNAUTHORIZED)

    def _fatal(self, code: int) -> None:
        self._close_connection(f"closed for good ({code})")
        self._enter(Phase.CLOSED_FATAL, f"fatal close {code}")
        self.fatal_code = code
        reason = FATAL_REASONS.get(code, f"the server closed the connection ({code})")
        self._notice(None, reason)
        self._effects.append(FatalNotice(code, reason))

    def _close_connection(self, reason: str) -> None:
        """Ack what is stored, close (or abandon) the socket, forget the connection state."""
        if self.phase in _WELCOMED:
            self._flush_acks()  # what is stored is acked now, not after the next connect
        if self.phase in _OPEN or self.phase is Phase.CONNECTING:
            self._effects.append(Disconnect(reason))  # also abandons a connection underway
        self._forget_connection()

    def _enter(self, phase: Phase, event: str) -> bool:
        """The one place the phase changes: only along :data:`TRANSITIONS`; anything else
        (staying in the phase included) is ignored and reported as a
        :class:`ProtocolViolation`."""
        if phase not in TRANSITIONS[self.phase]:
            self._violation(event)
            return False
        self.phase = phase
        return True

    def _violation(self, event: str) -> None:
        self._effects.append(ProtocolViolation(event, self.phase))

    def _drop_connection(self, now: float, reason: str) -> None:
        self._effects.append(Disconnect(reason))
        self._go_offline(now, reason)

    def _open(self, now: float) -> None:
        self._enter(Phase.CONNECTING, "open")
        self._effects.append(Connect())
        self._notice(None, None)

    def _go_offline(self, now: float, error: str) -> None:
        self._forget_connection()
        self._reconnect_attempts += 1
        settings = self.settings
        delay = backoff(
            self._reconnect_attempts, self._rng, settings.reconnect_base, settings.reconnect_cap
        )
        self._reconnect_at = now + delay
        self._enter(Phase.OFFLINE, "offline")
        self._notice(delay, error)

    def _forget_connection(self) -> None:
        # Held envelopes were neither stored nor acked: the server replays them.
        self._held.clear()
        self._gaps.clear()
        self._unacked.clear()
        self._unacked_count = 0
        self._ack_due = None
        self._device_acked = 0  # a DeviceEnvelope replayed after a lost Ack is acked again

    def _notice(self, retry_in: float | None, error: str | None) -> None:
        self._effects.append(ConnectionNotice(self.phase, retry_in, error, self.fatal_code))

    # ------------------------------------------------------------------ user actions

    def send(self, item: OutboxItem, content: Content, created_at: int, now: float) -> None:
        """Queue a new own message: persisted first, then sent when the server is there."""
        self.outbox[item.id] = item
        self._effects.append(
            StoreOutgoing(item.id, item.conv_id, item.payload, content, created_at)
        )
        self._transmit_item(item, now)

    def retry(self, item: OutboxItem, now: float) -> None:
        """Send a failed message again, with the same id."""
        self.outbox[item.id] = item
        self._effects.append(StoreRetry(item.id, item.conv_id, item.payload))
        self._transmit_item(item, now)

    def unsent(self, msg_id: uuid.UUID) -> Send | None:
        """The ``Send`` of own message ``msg_id`` while it waits for the server's answer (to
        seal it again at once after ``StaleDevices``); None once it is answered."""
        item = self.outbox.get(msg_id)
        if item is None:
            return None
        return Send(id=item.id, conv=item.conv_id, payload=item.payload)

    def read(self, conv_id: str, seq: int) -> None:
        """The user has read ``conv_id`` up to ``seq``."""
        self._effects.append(StoreReadMark(conv_id, seq))
        # Kept and sent again after every Welcome: a Read lost with its connection is not
        # answered, so nothing else would tell us to resend it.
        self._reads[conv_id] = max(seq, self._reads.get(conv_id, 0))
        if self.phase in _WELCOMED:
            self._send(Read(conv=conv_id, seq=seq))

    def watermarks(self, marks: Iterable[Watermark]) -> None:
        """Members' watermarks learnt out of band (the REST receipts of a conversation)."""
        for mark in marks:
            self._receipt(mark.conv, mark.account, mark.delivered, mark.read)

    def refresh_failed(self, conv_id: str) -> None:
        """The :class:`RefreshConversation` of ``conv_id`` failed: ask again when needed."""
        self._refreshing.discard(conv_id)

    def members_changed(self, conv_id: str, members: frozenset[str]) -> None:
        """The conversation's member list is now ``members`` (after a refresh)."""
        self._refreshing.discard(conv_id)
        self.members[conv_id] = members
        self._promote(conv_id)

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> None:
        """Run whatever is due at ``now``: reconnect, keepalive, resends, refetches, acks."""
        if self.phase is Phase.OFFLINE and now >= self._reconnect_at:
            self._open(now)
        settings = self.settings
        if self.phase in _OPEN:
            if now - self._last_rx >= settings.dead_after:
                self._drop_connection(
                    now, f"no frame from the server for {settings.dead_after:g} s"
                )
                return
            handshake_over = now - self._connected_at >= settings.handshake_timeout
            if self.phase is Phase.HANDSHAKE and handshake_over:
                self._drop_connection(now, "no welcome from the server")
                return
            if now - self._last_ping >= settings.ping_interval:
                self._pings += 1
                self._last_ping = now
                self._send(Ping(n=self._pings))
        if self.phase in _WELCOMED:
            self._resend_due(now)
            for conv_id, gap in list(self._gaps.items()):
                if now >= gap.deadline:
                    self._refetch(conv_id, gap, now)
            if self._ack_due is not None and now >= self._ack_due:
                self._flush_acks()

    def _resend_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            due, _, msg_id = heapq.heappop(self._due)
            item = self.outbox.get(msg_id)
            if item is not None and item.due == due:
                self._transmit_item(item, now)

    def _drop_stale_due(self) -> None:
        while self._due:
            due, _, msg_id = self._due[0]
            item = self.outbox.get(msg_id)
            if item is not None and item.due == due:
                return
            heapq.heappop(self._due)

    def _schedule(self, item: OutboxItem, due: float) -> None:
        item.due = due
        self._due_tiebreak += 1
        heapq.heappush(self._due, (due, self._due_tiebreak, item.id))

    def _transmit_item(self, item: OutboxItem, now: float) -> None:
        if self.phase not in _WELCOMED:
            return
        probe = self._blocked.get(item.conv_id)
        if probe is not None and probe != item.id:
            return  # waits for the probe's answer (_answered), then goes in outbox order
        item.attempts += 1
        settings = self.settings
        retry = backoff(item.attempts, self._rng, settings.retry_base, settings.retry_cap)
        wait = max(settings.send_timeout, retry)
        self._schedule(item, now + wait)
        self._send(Send(id=item.id, conv=item.conv_id, payload=item.payload))

    def _send(self, frame: ClientFrame) -> None:
        self._effects.append(Transmit(frame))

    # ------------------------------------------------------------------ frames

    def receive(self, frame: ServerFrame, now: float) -> None:
        """A frame arrived on the open connection."""
        self._last_rx = now
        if self.phase not in _WELCOMED and not isinstance(frame, Welcome | Synced | Error | Pong):
            # Conversation frames only follow the server's greeting: acting on one earlier
            # (a Fetch sent before Hello is answered) could take a replay batch for its answer.
            self._violation(f"{type(frame).__name__} before Welcome")
            return
        match frame:
            case Envelope():
                self._deliver(frame.conv, (frame,), None, now)
            case Batch():
                self._deliver(frame.conv, frame.envelopes, frame.head, now)
            case DeviceEnvelope():
                self._device_envelope(frame, now)
            case Accepted():
                self._accepted(frame, now)
            case Rejected():
                self._rejected(frame, now)
            case Receipt():
                self._receipt(frame.conv, frame.account, frame.delivered, frame.read)
            case Welcome():
                self._welcome(frame, now)
            case Synced():
                self._synced(now)
            case Error():
                self._error(frame, now)
            case _:  # Pong: proof of life; StaleDevices/DeviceAccepted: the runtime's sealer
                pass

    def _welcome(self, frame: Welcome, now: float) -> None:
        if not self._enter(Phase.REPLAY, "Welcome"):
            return
        self._reconnect_attempts = 0
        self._notice(None, None)
        self._heads = dict(frame.heads)
        self.watermarks(frame.watermarks)
        for conv_id in frame.heads:
            self._ensure_known(conv_id)
        for conv_id, seq in self._reads.items():
            self._send(Read(conv=conv_id, seq=seq))
        self._due.clear()
        # A new connection starts over: everything goes again in outbox order, and the server
        # refuses what follows the first message it cannot take yet.
        self._blocked.clear()
        for item in self.outbox.values():
            item.attempts = 0
            item.refused = False
            self._transmit_item(item, now)

    def _synced(self, now: float) -> None:
        if not self._enter(Phase.LIVE, "Synced"):
            return
        self._flush_acks()
        self._effects.append(SyncedNotice())
        # Catch up on what the pending queue did not bring (e.g. after a restore).
        for conv_id, head in self._heads.items():
            if head > self.cursors.get(conv_id, 0) and conv_id not in self._gaps:
                self._fetch(conv_id, head, now, 1)

    def _error(self, frame: Error, now: float) -> None:
        """An error about a Fetch (its ref is the conversation) means the gap is unavailable;
        a transient one about a message: retry it later with backoff. Others: nothing to do."""
        ref = frame.ref or ""
        gap = self._gaps.get(ref)
        if gap is not None:
            self._give_up(ref, gap)
            return
        try:
            msg_id = uuid.UUID(ref)
        except ValueError:
            return
        item = self.outbox.get(msg_id)
        if item is not None:
            delay = backoff(
                item.attempts, self._rng, self.settings.retry_base, self.settings.retry_cap
            )
            self._block(item, delay, now)

    def _rejected(self, frame: Rejected, now: float) -> None:
        """A permanent refusal fails the message; a transient one sends it again later."""
        item = self.outbox.get(frame.id)
        if item is None:
            return
        if frame.code not in TRANSIENT_SEND_ERRORS:
            del self.outbox[frame.id]
            self._effects.append(MarkFailed(frame.id, frame.code))
            self._answered(item, now)
            return
        settings = self.settings
        if frame.code == ErrorCode.QUOTA_EXCEEDED:  # frees up only as recipients catch up
            delay = settings.retry_cap * (0.5 + 0.5 * self._rng.random())
        else:
            delay = backoff(item.attempts, self._rng, settings.retry_base, settings.retry_cap)
        self._effects.append(SendDeferred(frame.id, frame.code, self._block(item, delay, now)))

    def _block(self, item: OutboxItem, delay: float, now: float) -> float:
        """The server did not store ``item`` for now: block its conversation (module
        docstring). The probe goes again in ``delay`` seconds, unless ``item`` is a follower
        refused while the conversation was blocked: it waits for the probe. Returns the wait."""
        conv_id = item.conv_id
        item.refused = True
        probe_id = self._blocked.get(conv_id)
        if probe_id is None or probe_id == item.id:
            probe = next(i for i in self.outbox.values() if i.conv_id == conv_id)
            self._blocked[conv_id] = probe.id
            self._schedule(probe, now + delay)
            return delay
        return max(0.0, self.outbox[probe_id].due - now)

    def _answered(self, item: OutboxItem, now: float) -> None:
        """``item`` left the outbox. If it was its conversation's probe, the conversation is
        unblocked: the messages held back go, in outbox order, with a fresh backoff (they
        waited; they did not fail)."""
        conv_id = item.conv_id
        if self._blocked.get(conv_id) != item.id:
            return
        del self._blocked[conv_id]
        if not item.refused:
            # The probe was on its way before the refusal and never refused itself: its answer
            # says nothing about the server taking messages again. The next one is the probe.
            probe = next((i for i in self.outbox.values() if i.conv_id == conv_id), None)
            if probe is not None:
                self._blocked[conv_id] = probe.id
                settings = self.settings
                retry = backoff(
                    max(probe.attempts, 1), self._rng, settings.retry_base, settings.retry_cap
                )
                self._schedule(probe, now + retry)
                return
        for waiting in self.outbox.values():
            if waiting.conv_id == conv_id:
                waiting.attempts = 0
                waiting.refused = False
                self._transmit_item(waiting, now)

    def _accepted(self, frame: Accepted, now: float) -> None:
        item = self.outbox.pop(frame.id, None)
        if item is not None:
            self._mark_sent(frame.id, frame.conv, frame.seq, frame.ts)
            self._answered(item, now)
        # The server does not echo our own message to us: its seq is stored now.
        if frame.seq > self.cursors.get(frame.conv, 0):
            self._held.setdefault(frame.conv, {}).setdefault(frame.seq, None)
            self._release(frame.conv)

    def _mark_sent(self, msg_id: uuid.UUID, conv_id: str, seq: int, ts: int) -> None:
        delivered, read = self._promoted.get(conv_id, (0, 0))
        if seq <= read:
            status = MessageStatus.READ
        elif seq <= delivered:
            status = MessageStatus.DELIVERED
        else:
            status = MessageStatus.SENT
        self._effects.append(MarkSent(msg_id, conv_id, seq, ts, status))

    # ------------------------------------------------------------------ incoming envelopes

    def _deliver(
        self, conv_id: str, envelopes: Iterable[Envelope], head: int | None, now: float
    ) -> None:
        cursor = self.cursors.get(conv_id, 0)
        held = self._held.setdefault(conv_id, {})
        first: int | None = None
        count = 0
        for env in envelopes:
            count += 1
            if first is None:
                first = env.seq
            if env.seq > cursor:
                held[env.seq] = env
            item = self.outbox.pop(env.id, None)
            if item is not None:  # our own message, echoed before its Accepted
                self._mark_sent(env.id, conv_id, env.seq, env.ts)
                self._answered(item, now)
        gap = self._gaps.get(conv_id)
        # A Batch starting at or below the gap answers our Fetch (a replay Batch never starts
        # below envelopes we hold): what the answer leaves out is not available to us.
        answered = gap is not None and head is not None and (first is None or first <= gap.upto + 1)
        if gap is not None and answered:
            del self._gaps[conv_id]
            self._skip(conv_id, gap.upto)
        self._release(conv_id)
        acked = self.cursors.get(conv_id, 0)
        if acked:  # even for duplicates: our earlier Ack may have been lost
            self._unacked[conv_id] = acked
        self._unacked_count += count
        if self._unacked_count >= ACK_EVERY:
            self._flush_acks()
        elif self._ack_due is None:
            self._ack_due = now + ACK_DELAY
        if conv_id in self._gaps:
            return
        remaining = self._held.get(conv_id)
        if remaining:
            self._fetch(conv_id, min(remaining) - 1, now, 1)
        elif gap is not None and answered and gap.after < self.cursors[conv_id] < gap.upto:
            self._fetch(conv_id, gap.upto, now, 1)  # a partial answer made progress: go on

    def _device_envelope(self, frame: DeviceEnvelope, now: float) -> None:
        """A message to this device alone: stored (in dseq order, as the server sends them),
        then acked with the next Ack."""
        self._effects.append(StoreDeviceEnvelope(frame))
        self._device_stored = max(self._device_stored, frame.dseq)
        self._unacked_count += 1
        if self._unacked_count >= ACK_EVERY:
            self._flush_acks()
        elif self._ack_due is None:
            self._ack_due = now + ACK_DELAY

    def _skip(self, conv_id: str, upto: int) -> None:
        """Count seqs up to ``upto`` as unavailable, but never past an envelope we hold."""
        held = self._held.get(conv_id)
        if held:
            upto = min(upto, min(held) - 1)
        if upto > self.cursors.get(conv_id, 0):
            self.cursors[conv_id] = upto
            self._effects.append(AdvanceCursor(conv_id, upto))

    def _release(self, conv_id: str) -> None:
        """Store the contiguous run above the cursor; keep the rest held."""
        held = self._held.get(conv_id)
        if held is None:
            return
        start = cursor = self.cursors.get(conv_id, 0)
        run: list[Envelope] = []
        while cursor + 1 in held:
            cursor += 1
            env = held.pop(cursor)
            if env is not None:
                run.append(env)
        if not held:
            del self._held[conv_id]
        if cursor == start:
            return
        if run:
            self._effects.append(StoreIncoming(conv_id, tuple(run)))
            if any(env.kind == "system" for env in run):
                self._refresh(conv_id)
            else:
                self._ensure_known(conv_id)
            promoted = self._promoted.get(conv_id)
            if promoted and promoted[0] and any(env.sender == self.account_id for env in run):
                # own messages from my other device: stored as sent, raised to what is known
                self._effects.append(Promote(conv_id, *promoted))
        self.cursors[conv_id] = cursor
        self._effects.append(AdvanceCursor(conv_id, cursor))
        gap = self._gaps.get(conv_id)
        if gap is not None and cursor >= gap.upto:
            del self._gaps[conv_id]

    def _fetch(self, conv_id: str, upto: int, now: float, tries: int) -> None:
        after = self.cursors.get(conv_id, 0)
        self._gaps[conv_id] = _Gap(after, upto, now + self.settings.fetch_timeout * tries, tries)
        self._send(Fetch(conv=conv_id, after=after, limit=min(MAX_BATCH, upto - after)))

    def _refetch(self, conv_id: str, gap: _Gap, now: float) -> None:
        if gap.tries < FETCH_TRIES:
            self._fetch(conv_id, gap.upto, now, gap.tries + 1)
            return
        # The server never answered: count the gap as unavailable rather than stall forever.
        self._give_up(conv_id, gap)

    def _give_up(self, conv_id: str, gap: _Gap) -> None:
        del self._gaps[conv_id]
        self._skip(conv_id, gap.upto)
        self._release(conv_id)

    def _flush_acks(self) -> None:
        if self._unacked or self._device_stored > self._device_acked:
            self._send(Ack(upto=dict(self._unacked), device_upto=self._device_stored))
            self._device_acked = self._device_stored
            self._unacked.clear()
        self._unacked_count = 0
        self._ack_due = None

    def _ensure_known(self, conv_id: str) -> None:
        if conv_id not in self.members:
            self._refresh(conv_id)

    def _refresh(self, conv_id: str) -> None:
        if conv_id not in self._refreshing:
            self._refreshing.add(conv_id)
            self._effects.append(RefreshConversation(conv_id))

    # ------------------------------------------------------------------ receipts

    def _receipt(self, conv_id: str, account: str, delivered: int, read: int) -> None:
        if account == self.account_id:  # my other device read something
            self._effects.append(StoreReadMark(conv_id, read))
            return
        marks = self._marks.setdefault(conv_id, {})
        old_delivered, old_read = marks.get(account, (0, 0))
        new = (max(old_delivered, delivered, read), max(old_read, read))
        if new == (old_delivered, old_read):
            return
        marks[account] = new
        self._effects.append(StoreWatermark(conv_id, account, *new))
        self._promote(conv_id)

    def _others_minimum(self, conv_id: str) -> tuple[int, int]:
        """(delivered, read) reached by every member but me; (0, 0) when nobody else."""
        others = self.members[conv_id] - {self.account_id}
        if not others:
            return (0, 0)
        marks = self._marks.get(conv_id, {})
        pairs = [marks.get(account, (0, 0)) for account in others]
        return (min(p[0] for p in pairs), min(p[1] for p in pairs))

    def _promote(self, conv_id: str) -> None:
        if conv_id not in self.members:
            return  # statuses wait until we know who has to receive
        old = self._promoted.get(conv_id, (0, 0))
        delivered, read = self._others_minimum(conv_id)
        new = (max(old[0], delivered), max(old[1], read))
        if new != old:
            self._promoted[conv_id] = new
            self._effects.append(Promote(conv_id, *new))
