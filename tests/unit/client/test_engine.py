"""The engine alone: exact frames and effects in and out, one rule per test."""

from __future__ import annotations

import random
import uuid

import pytest

from tidings.client.core import engine
from tidings.client.core.engine import Engine, OutboxItem, Phase, Restored
from tidings.client.core.types import EngineSettings, MessageStatus
from tidings.protocol import (
    Accepted,
    Ack,
    Batch,
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
    Synced,
    Watermark,
    Welcome,
)
from tidings.protocol.content import Text

ME = "me"
PEER = "peer"
C = "c1"
T0 = 1000.0

SETTINGS = EngineSettings()


def env(seq: int, conv: str = C, sender: str = PEER, kind: str = "msg") -> Envelope:
    return Envelope(
        conv=conv,
        seq=seq,
        id=uuid.UUID(int=seq + 1000 * len(conv)),
        sender=sender,
        sender_device=1,
        ts=seq,
        payload=b"x",
        kind="system" if kind == "system" else "msg",
    )


def welcome(heads: dict[str, int] | None = None, marks: list[Watermark] | None = None) -> Welcome:
    return Welcome(
        version=1,
        account_id=ME,
        device_id=1,
        server_ts=1,
        heads=heads or {},
        watermarks=marks or [],
    )


def new_engine(
    cursors: dict[str, int] | None = None,
    outbox: list[OutboxItem] | None = None,
    members: dict[str, frozenset[str]] | None = None,
    marks: dict[str, dict[str, tuple[int, int]]] | None = None,
) -> Engine:
    restored = Restored(
        cursors=cursors or {},
        outbox=outbox or [],
        members={C: frozenset({ME, PEER})} if members is None else members,
        watermarks=marks or {},
    )
    return Engine(ME, random.Random(1), restored)


def online(e: Engine, heads: dict[str, int] | None = None, synced: bool = True) -> None:
    e.start(T0)
    e.connected(T0)
    e.receive(welcome(heads), T0)
    if synced:
        e.receive(Synced(), T0)
    e.take_effects()


def frames(effects: list[engine.Effect]) -> list[object]:
    return [e.frame for e in effects if isinstance(e, engine.Transmit)]


def only(effects: list[engine.Effect], kind: type) -> list[object]:
    return [e for e in effects if isinstance(e, kind)]


def item(n: int = 1, conv: str = C) -> OutboxItem:
    return OutboxItem(uuid.UUID(int=n), conv, b"payload")


# ----------------------------------------------------------------------------- connection


def test_start_connects_once_and_hello_carries_cursors() -> None:
    e = new_engine(cursors={C: 7})
    e.start(T0)
    effects = e.take_effects()
    assert effects == [engine.Connect(), engine.ConnectionNotice(Phase.CONNECTING, None, None)]
    e.start(T0)
    assert e.take_effects() == []
    e.connected(T0)
    assert frames(e.take_effects()) == [Hello(cursors={C: 7})]
    assert e.phase is Phase.HANDSHAKE


def test_reconnect_backoff_is_jittered_exponential_and_capped() -> None:
    e = new_engine()
    e.start(T0)
    now = T0
    delays = []
    for _ in range(12):
        e.take_effects()
        e.connect_failed(now, "refused")
        (notice,) = only(e.take_effects(), engine.ConnectionNotice)
        assert isinstance(notice, engine.ConnectionNotice)
        assert notice.phase is Phase.OFFLINE and notice.error == "refused"
        assert notice.retry_in is not None
        delays.append(notice.retry_in)
        wake = e.next_wakeup()
        assert wake == pytest.approx(now + notice.retry_in)
        e.tick(wake - 0.001)
        assert e.take_effects() == []
        now = wake
        e.tick(now)
        assert e.take_effects()[0] == engine.Connect()
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(30 <= d <= 60 for d in delays[8:])


def test_backoff_never_overflows() -> None:
    assert engine.backoff(10_000, random.Random(1), 0.5, 60) <= 60


def test_disconnect_reports_once_and_welcome_resets_the_backoff() -> None:
    e = new_engine()
    online(e)
    e.disconnected(T0 + 1, "closed")
    (notice,) = only(e.take_effects(), engine.ConnectionNotice)
    assert isinstance(notice, engine.ConnectionNotice) and notice.phase is Phase.OFFLINE
    e.disconnected(T0 + 1, "closed again")  # not open any more: ignored
    assert e.take_effects() == []
    e.tick(T0 + 100)
    e.connected(T0 + 100)
    e.receive(welcome(), T0 + 100)
    e.take_effects()
    e.disconnected(T0 + 101, "closed")
    (notice,) = only(e.take_effects(), engine.ConnectionNotice)
    assert isinstance(notice, engine.ConnectionNotice)
    assert notice.retry_in is not None and notice.retry_in <= 0.5


def test_stop_acks_what_is_stored_then_closes() -> None:
    e = new_engine()
    online(e)
    e.receive(env(1), T0)
    e.take_effects()
    e.stop()
    assert frames(e.take_effects()) == [Ack(upto={C: 1})]


def test_stop_while_connecting_abandons_the_attempt() -> None:
    e = new_engine()
    e.start(T0)
    e.take_effects()
    e.stop()
    assert e.take_effects()[0] == engine.Disconnect("stopped")


def test_stop_closes_and_stays_idle() -> None:
    e = new_engine()
    online(e)
    e.stop()
    assert e.take_effects() == [
        engine.Disconnect("stopped"),
        engine.ConnectionNotice(Phase.IDLE, None, None),
    ]
    assert e.next_wakeup() is None
    e.stop()  # not open: nothing to close
    assert e.take_effects() == [engine.ConnectionNotice(Phase.IDLE, None, None)]
    e.start(T0)
    assert e.take_effects()[0] == engine.Connect()


def test_ping_every_25_s_and_dead_after_60_s_of_silence() -> None:
    e = new_engine()
    online(e)
    assert e.next_wakeup() == T0 + SETTINGS.ping_interval
    e.tick(T0 + 25)
    assert frames(e.take_effects()) == [Ping(n=1)]  # and no Ack: nothing stored yet
    e.receive(Pong(n=1), T0 + 26)
    assert e.take_effects() == []
    e.tick(T0 + 50)
    assert frames(e.take_effects()) == [Ping(n=2)]
    e.tick(T0 + 26 + 60)
    effects = e.take_effects()
    assert effects[0] == engine.Disconnect("no frame from the server for 60 s")
    assert e.phase is Phase.OFFLINE


def test_no_welcome_means_reconnect() -> None:
    e = new_engine()
    e.start(T0)
    e.connected(T0)
    e.receive(Pong(n=0), T0 + 15)  # alive, but never welcomed
    e.take_effects()
    assert e.next_wakeup() == T0 + SETTINGS.handshake_timeout
    e.tick(T0 + SETTINGS.handshake_timeout)
    assert e.take_effects()[0] == engine.Disconnect("no welcome from the server")
    assert e.phase is Phase.OFFLINE


def test_welcome_then_synced() -> None:
    e = new_engine(members={})
    e.start(T0)
    e.connected(T0)
    e.take_effects()
    e.receive(welcome(heads={C: 0}), T0)
    effects = e.take_effects()
    assert effects == [
        engine.ConnectionNotice(Phase.REPLAY, None, None),
        engine.RefreshConversation(C),
    ]
    e.receive(Synced(), T0)
    assert e.take_effects() == [engine.SyncedNotice()]
    assert e.phase is Phase.LIVE


def test_synced_fetches_what_the_heads_say_is_missing() -> None:
    e = new_engine(cursors={C: 3})
    online(e, heads={C: 5}, synced=False)
    e.receive(Synced(), T0)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=3, limit=2)]
    # The answer is empty: those seqs are not for us.
    e.receive(Batch(conv=C, envelopes=[], head=5), T0)
    assert only(e.take_effects(), engine.AdvanceCursor) == [engine.AdvanceCursor(C, 5)]


# ----------------------------------------------------------------------------- outbox


def test_send_is_stored_before_it_goes_out() -> None:
    e = new_engine()
    online(e)
    content = Text(body="hi")
    e.send(item(), content, 123, T0)
    effects = e.take_effects()
    assert effects[0] == engine.StoreOutgoing(item().id, C, b"payload", content, 123)
    assert frames(effects) == [Send(id=item().id, conv=C, payload=b"payload")]


def test_send_offline_waits_for_welcome_and_restored_outbox_is_resent() -> None:
    e = new_engine(outbox=[item(1)])
    e.send(item(2), Text(body="later"), 1, T0)
    effects = e.take_effects()
    assert [type(x) for x in effects] == [engine.StoreOutgoing]
    e.start(T0)
    e.connected(T0)
    e.receive(welcome(), T0)
    sent = frames(e.take_effects())
    assert sent[1:] == [
        Send(id=item(1).id, conv=C, payload=b"payload"),
        Send(id=item(2).id, conv=C, payload=b"payload"),
    ]


def test_unanswered_send_is_resent_with_the_same_id() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="hi"), 1, T0)
    e.take_effects()
    assert e.next_wakeup() == T0 + SETTINGS.send_timeout
    e.tick(T0 + SETTINGS.send_timeout)
    assert frames(e.take_effects()) == [Send(id=item().id, conv=C, payload=b"payload")]
    # answered now: the pending timer is stale and neither fires nor wakes us
    e.receive(Accepted(id=item().id, conv=C, seq=1, ts=5), T0 + 11)
    e.take_effects()
    assert (
        e.next_wakeup() == T0 + 11 + engine.ACK_DELAY
        or e.next_wakeup() == T0 + SETTINGS.ping_interval
    )
    e.tick(T0 + 24)
    assert frames(e.take_effects()) == []


def test_stale_timer_skipped_while_another_is_due() -> None:
    e = new_engine()
    online(e)
    e.send(item(1), Text(body="a"), 1, T0)
    e.send(item(2), Text(body="b"), 1, T0 + 1)
    e.receive(Accepted(id=item(1).id, conv=C, seq=1, ts=5), T0 + 2)
    e.take_effects()
    e.tick(T0 + 2 + SETTINGS.send_timeout)
    assert frames(e.take_effects()) == [Send(id=item(2).id, conv=C, payload=b"payload")]


def test_accepted_status_follows_known_watermarks() -> None:
    e = new_engine(marks={C: {PEER: (5, 3)}})
    online(e)
    for n, seq, status in [
        (1, 3, MessageStatus.READ),
        (2, 5, MessageStatus.DELIVERED),
        (3, 6, MessageStatus.SENT),
    ]:
        e.send(item(n), Text(body="x"), 1, T0)
        e.receive(Accepted(id=item(n).id, conv=C, seq=seq, ts=9), T0)
        sent = only(e.take_effects(), engine.MarkSent)
        assert sent == [engine.MarkSent(item(n).id, C, seq, 9, status)]


def test_accepted_twice_or_unknown_changes_nothing_more() -> None:
    e = new_engine(cursors={C: 4})
    online(e)
    e.receive(Accepted(id=item(9).id, conv=C, seq=3, ts=1), T0)
    assert e.take_effects() == []


def test_own_seq_fills_the_cursor() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="x"), 1, T0)
    e.receive(Accepted(id=item().id, conv=C, seq=2, ts=1), T0)
    effects = e.take_effects()
    assert only(effects, engine.AdvanceCursor) == []  # seq 1 is still missing
    e.receive(env(1), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(1),))]
    assert only(effects, engine.AdvanceCursor) == [engine.AdvanceCursor(C, 2)]


def test_rejected_fails_only_a_known_message() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="x"), 1, T0)
    e.take_effects()
    e.receive(Rejected(id=item().id, conv=C, code="not_member"), T0)
    assert e.take_effects() == [engine.MarkFailed(item().id, "not_member")]
    e.receive(Rejected(id=item().id, conv=C, code="not_member"), T0)
    assert e.take_effects() == []
    assert not e.outbox


def test_transient_error_retries_with_backoff() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="x"), 1, T0)
    e.take_effects()
    e.receive(Error(code="overloaded", ref=str(item().id)), T0 + 1)
    assert e.take_effects() == []
    wake = e.next_wakeup()
    assert wake is not None and T0 + 1 + 0.25 <= wake <= T0 + 1.5
    e.tick(wake)
    assert frames(e.take_effects()) == [Send(id=item().id, conv=C, payload=b"payload")]
    # errors about something else change nothing
    for ref in (None, "send", str(uuid.UUID(int=77))):
        e.receive(Error(code="internal", ref=ref), wake)
    assert e.take_effects() == []


def test_retry_stores_then_sends() -> None:
    e = new_engine()
    online(e)
    e.retry(item(), T0)
    effects = e.take_effects()
    assert effects[0] == engine.StoreRetry(item().id, C, b"payload")
    assert frames(effects) == [Send(id=item().id, conv=C, payload=b"payload")]


# ----------------------------------------------------------------------------- incoming


def test_in_order_envelopes_are_stored_then_acked_in_one_frame() -> None:
    e = new_engine()
    online(e)
    e.receive(env(1), T0)
    e.receive(env(2), T0 + 0.01)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [
        engine.StoreIncoming(C, (env(1),)),
        engine.StoreIncoming(C, (env(2),)),
    ]
    assert frames(effects) == []
    assert e.next_wakeup() == T0 + engine.ACK_DELAY
    e.tick(T0 + engine.ACK_DELAY)
    assert frames(e.take_effects()) == [Ack(upto={C: 2})]


def test_duplicates_are_dropped_but_acked_again() -> None:
    e = new_engine(cursors={C: 2})
    online(e)
    e.receive(Batch(conv=C, envelopes=[env(1), env(2)], head=2), T0)
    assert e.take_effects() == []
    e.tick(T0 + 1)
    assert frames(e.take_effects()) == [Ack(upto={C: 2})]


def test_many_envelopes_ack_at_once() -> None:
    e = new_engine()
    online(e)
    batch = [env(s) for s in range(1, engine.ACK_EVERY + 1)]
    e.receive(Batch(conv=C, envelopes=batch, head=engine.ACK_EVERY), T0)
    effects = e.take_effects()
    assert frames(effects) == [Ack(upto={C: engine.ACK_EVERY})]
    assert effects.index(engine.AdvanceCursor(C, engine.ACK_EVERY)) < len(effects) - 1


def test_conversation_frames_before_welcome_are_ignored_and_reported() -> None:
    e = new_engine()
    e.start(T0)
    e.connected(T0)
    e.take_effects()
    e.receive(env(1), T0)
    e.receive(Batch(conv=C, envelopes=[env(2)], head=2), T0)
    effects = e.take_effects()
    # Nothing stored, nothing fetched or acked: the replay after Welcome brings them.
    assert only(effects, engine.StoreIncoming) == [] and frames(effects) == []
    assert effects == [
        engine.ProtocolViolation("Envelope before Welcome", Phase.HANDSHAKE),
        engine.ProtocolViolation("Batch before Welcome", Phase.HANDSHAKE),
    ]
    e.receive(welcome(), T0 + 1)
    e.receive(Batch(conv=C, envelopes=[env(1), env(2)], head=2), T0 + 1)
    e.receive(Synced(), T0 + 1)
    assert Ack(upto={C: 2}) in frames(e.take_effects())


def test_gap_is_fetched_and_filled_in_order() -> None:
    e = new_engine(cursors={C: 1})
    online(e)
    e.receive(env(4), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == []
    assert frames(effects) == [Fetch(conv=C, after=1, limit=2)]
    e.receive(env(5), T0)  # still held, no second Fetch
    assert frames(e.take_effects()) == []
    e.receive(Batch(conv=C, envelopes=[env(2), env(3), env(4), env(5)], head=5), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [
        engine.StoreIncoming(C, (env(2), env(3), env(4), env(5)))
    ]
    assert only(effects, engine.AdvanceCursor) == [engine.AdvanceCursor(C, 5)]


def test_gap_filled_by_live_envelopes_before_the_answer() -> None:
    e = new_engine()
    online(e)
    e.receive(env(2), T0)
    e.receive(env(1), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(1), env(2)))]
    e.receive(Batch(conv=C, envelopes=[env(1)], head=2), T0)  # the late answer: duplicates
    assert only(e.take_effects(), engine.StoreIncoming) == []


def test_answer_that_starts_later_skips_what_is_not_for_us() -> None:
    e = new_engine()
    online(e)
    e.receive(env(10, kind="system"), T0)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=0, limit=9)]
    e.receive(Batch(conv=C, envelopes=[env(10, kind="system"), env(11)], head=11), T0)
    effects = e.take_effects()
    assert only(effects, engine.AdvanceCursor) == [
        engine.AdvanceCursor(C, 9),
        engine.AdvanceCursor(C, 11),
    ]
    assert only(effects, engine.RefreshConversation) == [engine.RefreshConversation(C)]


def test_replay_batch_above_held_is_not_the_answer() -> None:
    e = new_engine()
    online(e, synced=False)
    e.receive(Batch(conv=C, envelopes=[env(3)], head=9), T0)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=0, limit=2)]
    e.receive(Batch(conv=C, envelopes=[env(5)], head=9), T0)
    assert only(e.take_effects(), engine.AdvanceCursor) == []


def test_empty_answer_never_skips_a_held_envelope() -> None:
    e = new_engine()
    online(e)
    e.receive(env(5), T0)
    e.receive(env(3), T0)
    e.take_effects()
    e.receive(Batch(conv=C, envelopes=[], head=5), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(3),))]
    assert frames(effects) == [Fetch(conv=C, after=3, limit=1)]


def test_partial_answer_keeps_fetching_up_to_the_head() -> None:
    e = new_engine()
    online(e, heads={C: 1200}, synced=False)
    e.receive(Synced(), T0)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=0, limit=500)]
    e.receive(Batch(conv=C, envelopes=[env(s) for s in range(1, 501)], head=1200), T0)
    assert Fetch(conv=C, after=500, limit=500) in frames(e.take_effects())
    e.receive(Batch(conv=C, envelopes=[], head=1200), T0)
    assert only(e.take_effects(), engine.AdvanceCursor) == [engine.AdvanceCursor(C, 1200)]


def test_unanswered_fetch_is_repeated_then_given_up() -> None:
    e = new_engine()
    online(e)
    e.receive(env(3), T0)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=0, limit=2)]
    now = T0
    for tries in range(1, engine.FETCH_TRIES):
        now += SETTINGS.fetch_timeout * tries
        e.receive(Pong(n=0), now)  # still alive
        e.tick(now)
        assert Fetch(conv=C, after=0, limit=2) in frames(e.take_effects())
    now += SETTINGS.fetch_timeout * engine.FETCH_TRIES
    e.receive(Pong(n=0), now)
    e.tick(now)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(3),))]


def test_fetch_refused_counts_the_gap_as_unavailable() -> None:
    e = new_engine()
    online(e)
    e.receive(env(3), T0)
    e.take_effects()
    e.receive(Error(code="not_member", ref=C), T0)
    assert only(e.take_effects(), engine.StoreIncoming) == [engine.StoreIncoming(C, (env(3),))]


def test_own_message_echoed_before_accepted() -> None:
    e = new_engine()
    online(e)
    mine = env(1, sender=ME)
    e.send(OutboxItem(mine.id, C, b"x"), Text(body="x"), 1, T0)
    e.take_effects()
    e.receive(mine, T0)
    effects = e.take_effects()
    assert only(effects, engine.MarkSent) == [engine.MarkSent(mine.id, C, 1, 1, MessageStatus.SENT)]
    assert not e.outbox


def test_unknown_conversation_is_refreshed_once() -> None:
    e = new_engine(members={})
    online(e)
    e.receive(env(1), T0)
    e.receive(env(2), T0)
    assert only(e.take_effects(), engine.RefreshConversation) == [engine.RefreshConversation(C)]
    e.members_changed(C, frozenset({ME, PEER}))
    e.receive(env(3, kind="system"), T0)
    assert only(e.take_effects(), engine.RefreshConversation) == [engine.RefreshConversation(C)]
    e.refresh_failed(C)  # the REST call failed: the next system envelope asks again
    e.receive(env(4, kind="system"), T0)
    assert only(e.take_effects(), engine.RefreshConversation) == [engine.RefreshConversation(C)]


def test_disconnect_forgets_held_envelopes() -> None:
    e = new_engine()
    online(e)
    e.receive(env(2), T0)
    e.disconnected(T0, "closed")
    e.take_effects()
    e.tick(T0 + 1)
    e.connected(T0 + 1)
    e.receive(welcome(), T0 + 1)
    e.receive(Batch(conv=C, envelopes=[env(1)], head=2), T0 + 1)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(1),))]


# ----------------------------------------------------------------------------- receipts


def test_read_is_stored_sent_and_resent_after_every_welcome() -> None:
    e = new_engine()
    e.read(C, 3)
    assert e.take_effects() == [engine.StoreReadMark(C, 3)]
    online(e)
    e.read(C, 4)
    assert frames(e.take_effects()) == [Read(conv=C, seq=4)]
    e.disconnected(T0, "closed")
    e.tick(T0 + 1)
    e.connected(T0 + 1)
    e.receive(welcome(), T0 + 1)
    assert Read(conv=C, seq=4) in frames(e.take_effects())


def test_direct_statuses_follow_the_peer_receipts() -> None:
    e = new_engine()
    online(e)
    e.receive(Receipt(conv=C, account=PEER, delivered=4, read=2), T0)
    assert e.take_effects() == [
        engine.StoreWatermark(C, PEER, 4, 2),
        engine.Promote(C, 4, 2),
    ]
    e.receive(Receipt(conv=C, account=PEER, delivered=3, read=1), T0)  # older: no change
    assert e.take_effects() == []
    e.receive(Receipt(conv=C, account=PEER, delivered=4, read=6), T0)  # read implies delivered
    assert e.take_effects() == [engine.StoreWatermark(C, PEER, 6, 6), engine.Promote(C, 6, 6)]


def test_own_other_device_receipt_is_my_read_mark() -> None:
    e = new_engine()
    online(e)
    e.receive(Receipt(conv=C, account=ME, delivered=9, read=8), T0)
    assert e.take_effects() == [engine.StoreReadMark(C, 8)]


def test_group_status_needs_every_other_member() -> None:
    group = frozenset({ME, "a", "b"})
    e = new_engine(members={C: group})
    online(e)
    e.receive(Receipt(conv=C, account="a", delivered=5, read=5), T0)
    assert only(e.take_effects(), engine.Promote) == []
    e.receive(Receipt(conv=C, account="b", delivered=3, read=0), T0)
    assert only(e.take_effects(), engine.Promote) == [engine.Promote(C, 3, 0)]
    # a new member lowers the minimum, but statuses never go back
    e.members_changed(C, group | {"c"})
    assert e.take_effects() == []


def test_statuses_wait_for_the_member_list() -> None:
    e = new_engine(members={})
    e.start(T0)
    e.connected(T0)
    e.take_effects()
    e.receive(welcome(marks=[Watermark(C, PEER, 2, 1)]), T0)
    effects = e.take_effects()
    assert engine.StoreWatermark(C, PEER, 2, 1) in effects
    assert only(effects, engine.Promote) == []
    e.members_changed(C, frozenset({ME, PEER}))
    assert e.take_effects() == [engine.Promote(C, 2, 1)]


def test_alone_in_a_group_nothing_is_delivered() -> None:
    e = new_engine(members={C: frozenset({ME})})
    online(e)
    e.receive(Receipt(conv=C, account="gone", delivered=5, read=5), T0)
    assert only(e.take_effects(), engine.Promote) == []


def test_refused_catch_up_fetch_skips_to_the_head() -> None:
    e = new_engine(cursors={C: 3})
    online(e, heads={C: 5})
    e.receive(Error(code="not_member", ref=C), T0)
    assert e.take_effects() == [engine.AdvanceCursor(C, 5)]


def test_a_gap_is_not_refetched_before_its_deadline() -> None:
    e = new_engine()
    online(e)
    e.receive(env(3), T0 + 20)
    assert frames(e.take_effects()) == [Fetch(conv=C, after=0, limit=2)]
    e.tick(T0 + 25)
    assert frames(e.take_effects()) == [Ping(n=1)]  # and no Ack: nothing stored yet


def test_own_messages_from_another_device_get_the_known_status() -> None:
    e = new_engine(marks={C: {PEER: (3, 2)}})
    online(e)
    e.receive(env(1, sender=ME), T0)
    effects = e.take_effects()
    assert effects[:2] == [engine.StoreIncoming(C, (env(1, sender=ME),)), engine.Promote(C, 3, 2)]
    e.receive(env(2), T0)  # not own: no promotion needed
    assert only(e.take_effects(), engine.Promote) == []


# ----------------------------------------------------------------------------- to-device messages


def dmsg(dseq: int) -> DeviceEnvelope:
    return DeviceEnvelope(
        dseq=dseq, id=uuid.UUID(int=90_000 + dseq), sender=PEER, sender_device=2, ts=0, payload=b"c"
    )


def test_device_envelopes_are_stored_then_acked_with_device_upto() -> None:
    e = new_engine()
    online(e)
    e.receive(dmsg(1), T0)
    e.receive(dmsg(2), T0)
    e.receive(env(1), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreDeviceEnvelope) == [
        engine.StoreDeviceEnvelope(dmsg(1)),
        engine.StoreDeviceEnvelope(dmsg(2)),
    ]
    assert frames(effects) == []
    e.tick(T0 + engine.ACK_DELAY)
    assert frames(e.take_effects()) == [Ack(upto={C: 1}, device_upto=2)]
    e.tick(T0 + 1)
    assert frames(e.take_effects()) == []  # nothing new: no empty Ack


def test_device_envelope_replayed_after_a_reconnect_is_acked_again() -> None:
    e = new_engine()
    online(e)
    e.receive(dmsg(3), T0)
    e.tick(T0 + engine.ACK_DELAY)
    assert frames(e.take_effects()) == [Ack(device_upto=3)]
    e.disconnected(T0 + 1, "gone")  # that Ack may have been lost with the connection
    e.take_effects()
    e.tick(T0 + 100)
    e.connected(T0 + 100)
    e.receive(welcome(), T0 + 100)
    e.receive(dmsg(3), T0 + 100)
    assert only(e.take_effects(), engine.StoreDeviceEnvelope) == [
        engine.StoreDeviceEnvelope(dmsg(3))
    ]
    e.receive(Synced(), T0 + 100)
    assert frames(e.take_effects()) == [Ack(device_upto=3)]


def test_many_device_envelopes_are_acked_without_waiting() -> None:
    e = new_engine()
    online(e)
    for dseq in range(1, engine.ACK_EVERY + 1):
        e.receive(dmsg(dseq), T0)
    assert frames(e.take_effects()) == [Ack(device_upto=engine.ACK_EVERY)]


# ----------------------------------------------------------------------------- transitions


def test_the_transition_table_is_the_phase_diagram() -> None:
    assert set(engine.TRANSITIONS) == set(Phase)
    assert engine.TRANSITIONS[Phase.CLOSED_FATAL] == frozenset()  # terminal
    for phase, targets in engine.TRANSITIONS.items():
        assert phase not in targets  # staying is not a transition
        if phase is not Phase.CLOSED_FATAL:
            assert Phase.CLOSED_FATAL in targets


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ("idle", "Welcome"),
        ("handshake", "Synced"),
        ("live", "Synced"),
        ("live", "Welcome"),
    ],
)
def test_a_frame_that_needs_an_unlisted_transition_is_ignored_and_reported(
    setup: str, event: str
) -> None:
    e = new_engine()
    if setup != "idle":
        e.start(T0)
        e.connected(T0)
    if setup == "live":
        e.receive(welcome(), T0)
        e.receive(Synced(), T0)
    e.take_effects()
    before = e.phase
    e.receive(welcome() if event == "Welcome" else Synced(), T0 + 1)
    assert e.take_effects() == [engine.ProtocolViolation(event, before)]
    assert e.phase is before


def test_connected_or_connect_failed_out_of_turn_are_violations() -> None:
    e = new_engine()
    e.connected(T0)
    e.connect_failed(T0, "late")
    assert e.take_effects() == [
        engine.ProtocolViolation("connected", Phase.IDLE),
        engine.ProtocolViolation("connect_failed", Phase.IDLE),
    ]
    assert e.phase is Phase.IDLE


def test_stop_when_idle_only_reports_the_phase() -> None:
    e = new_engine()
    e.stop()
    assert e.take_effects() == [engine.ConnectionNotice(Phase.IDLE, None, None)]


# ----------------------------------------------------------------------------- fatal closes

REMOVED = "this device was removed from the account, or its token is invalid"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (4401, REMOVED),
        (4409, "another connection of this device took over"),
        (4426, "the server speaks a newer protocol: update Tidings"),
    ],
)
def test_a_fatal_close_code_ends_for_good(code: int, reason: str) -> None:
    e = new_engine(outbox=[item()])
    online(e)
    e.receive(env(1), T0)
    e.disconnected(T0 + 1, "closed", code)
    effects = e.take_effects()
    assert frames(effects) == [Ack(upto={C: 1})]  # what is stored is acked first
    assert effects[-3:] == [
        engine.Disconnect(f"closed for good ({code})"),
        engine.ConnectionNotice(Phase.CLOSED_FATAL, None, reason, code),
        engine.FatalNotice(code, reason),
    ]
    assert e.phase is Phase.CLOSED_FATAL and e.fatal_code == code
    assert e.next_wakeup() is None  # no reconnect timer
    for later in (T0 + 100, T0 + 10_000):
        e.tick(later)
    e.start(T0 + 10_000)  # not even from the foreground
    e.stop()
    assert e.take_effects() == []
    e.send(item(2), Text(body="x"), 0, T0 + 10_000)
    assert frames(e.take_effects()) == []  # stored, never sent


def test_an_ordinary_close_code_reconnects() -> None:
    e = new_engine()
    online(e)
    e.disconnected(T0, "going away", 1001)
    assert e.phase is Phase.OFFLINE


def test_a_refused_handshake_with_401_is_fatal_and_other_failures_are_not() -> None:
    e = new_engine()
    e.start(T0)
    e.connect_failed(T0, "server rejected WebSocket connection: HTTP 503", None)
    assert e.phase is Phase.OFFLINE
    e.tick(T0 + 100)
    e.take_effects()
    e.connect_failed(T0 + 100, "server rejected WebSocket connection: HTTP 401", 4401)
    assert e.take_effects() == [
        engine.Disconnect("closed for good (4401)"),  # the runtime forgets that attempt
        engine.ConnectionNotice(Phase.CLOSED_FATAL, None, REMOVED, 4401),
        engine.FatalNotice(4401, REMOVED),
    ]
    assert e.phase is Phase.CLOSED_FATAL


def test_a_rest_401_ends_for_good_from_any_phase_once() -> None:
    e = new_engine()
    e.unauthorized()  # idle: nothing to disconnect
    assert e.phase is Phase.CLOSED_FATAL
    assert only(e.take_effects(), engine.Disconnect) == []
    e.unauthorized()
    assert e.take_effects() == []
    live = new_engine()
    online(live)
    live.unauthorized()
    assert only(live.take_effects(), engine.Disconnect) == [
        engine.Disconnect("closed for good (4401)")
    ]


def test_an_unknown_fatal_code_gets_a_generic_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "is_fatal", lambda code: code is not None)
    e = new_engine()
    online(e)
    e.disconnected(T0, "closed", 4999)
    assert engine.FatalNotice(4999, "the server closed the connection (4999)") in (e.take_effects())


def test_settings_replace_the_default_timings() -> None:
    fast = EngineSettings(ping_interval=1.0, dead_after=3.0, handshake_timeout=2.0)
    e = Engine(ME, random.Random(1), settings=fast)
    e.start(T0)
    e.connected(T0)
    assert e.next_wakeup() == T0 + 1.0
    e.tick(T0 + 2.0)
    assert e.phase is Phase.OFFLINE  # no Welcome within 2 s
    assert EngineSettings() == Engine(ME, random.Random(1)).settings


def test_unsent_gives_the_send_of_a_waiting_message() -> None:
    e = new_engine(outbox=[item()])
    assert e.unsent(item().id) == Send(id=item().id, conv=C, payload=b"payload")
    assert e.unsent(item(2).id) is None


# ----------------------------------------------------------------------------- server limits


def test_rate_limited_keeps_the_message_sending_and_sends_it_again_later() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="x"), 1, T0)
    e.take_effects()
    e.receive(Rejected(id=item().id, conv=C, code="rate_limited"), T0 + 1)
    effects = e.take_effects()
    assert only(effects, engine.MarkFailed) == []
    (deferred,) = only(effects, engine.SendDeferred)
    assert isinstance(deferred, engine.SendDeferred)
    assert (deferred.id, deferred.code) == (item().id, "rate_limited")
    assert item().id in e.outbox
    wake = e.next_wakeup()
    assert wake is not None and wake == pytest.approx(T0 + 1 + deferred.retry_in)
    e.tick(wake)
    assert frames(e.take_effects()) == [Send(id=item().id, conv=C, payload=b"payload")]
    e.receive(Accepted(id=item().id, conv=C, seq=1, ts=5), wake)
    effects = e.take_effects()
    assert only(effects, engine.MarkSent) == [
        engine.MarkSent(item().id, C, 1, 5, MessageStatus.SENT)
    ]
    assert not e.outbox


def test_quota_exceeded_waits_about_the_longest_backoff() -> None:
    e = new_engine()
    online(e)
    e.send(item(), Text(body="x"), 1, T0)
    e.take_effects()
    e.receive(Rejected(id=item().id, conv=C, code="quota_exceeded"), T0)
    (deferred,) = only(e.take_effects(), engine.SendDeferred)
    assert isinstance(deferred, engine.SendDeferred)
    assert SETTINGS.retry_cap / 2 <= deferred.retry_in <= SETTINGS.retry_cap
    assert item().id in e.outbox


def test_a_fetch_answer_without_collected_seqs_moves_the_cursor_past_them() -> None:
    # The server dropped seqs 1..5 (acked by every member device): a device that lost its
    # history catches up from 6 on, and a live envelope above a collected run is not held.
    e = new_engine()
    online(e, heads={C: 10})
    e.take_effects()
    e.receive(Batch(conv=C, envelopes=[env(s) for s in range(6, 11)], head=10), T0)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [
        engine.StoreIncoming(C, tuple(env(s) for s in range(6, 11)))
    ]
    assert e.cursors[C] == 10
    e.receive(env(30), T0 + 1)  # 11..29 collected meanwhile
    (fetch,) = [f for f in frames(e.take_effects()) if isinstance(f, Fetch)]
    assert (fetch.after, fetch.limit) == (10, 19)
    e.receive(Batch(conv=C, envelopes=[env(30)], head=30), T0 + 2)
    effects = e.take_effects()
    assert only(effects, engine.StoreIncoming) == [engine.StoreIncoming(C, (env(30),))]
    assert [f for f in frames(effects) if isinstance(f, Fetch)] == []
    assert e.cursors[C] == 30
    e.tick(T0 + 100)  # no gap left to fetch again
    assert [f for f in frames(e.take_effects()) if isinstance(f, Fetch)] == []


# ----------------------------------------------------------------------------- written order


def sends(effects: list[engine.Effect]) -> list[int]:
    """The message numbers (``item(n)``) of the Sends among ``effects``, in order."""
    return [f.id.int for f in frames(effects) if isinstance(f, Send)]


def test_a_refusal_mid_burst_holds_the_rest_of_the_conversation_until_it_is_accepted() -> None:
    e = new_engine(members={C: frozenset({ME, PEER}), "c2": frozenset({ME, PEER})})
    online(e)
    for n in range(1, 6):  # pipelined: every Send goes out at once
        e.send(item(n), Text(body=str(n)), 1, T0)
    assert sends(e.take_effects()) == [1, 2, 3, 4, 5]
    e.receive(Accepted(id=item(1).id, conv=C, seq=1, ts=1), T0 + 0.1)
    e.receive(Rejected(id=item(2).id, conv=C, code="rate_limited"), T0 + 0.1)
    (deferred,) = only(e.take_effects(), engine.SendDeferred)
    assert isinstance(deferred, engine.SendDeferred)
    resend_at = T0 + 0.1 + deferred.retry_in
    # a follower refused meanwhile waits for the probe: no timer of its own
    e.receive(Rejected(id=item(4).id, conv=C, code="rate_limited"), T0 + 0.2)
    assert only(e.take_effects(), engine.SendDeferred) == [
        engine.SendDeferred(item(4).id, "rate_limited", pytest.approx(resend_at - T0 - 0.2))
    ]
    # a new message of the blocked conversation waits too; other conversations do not
    e.send(item(6), Text(body="6"), 1, T0 + 0.3)
    e.send(item(7, "c2"), Text(body="7"), 1, T0 + 0.3)
    assert sends(e.take_effects()) == [7]
    assert e.next_wakeup() == resend_at
    e.tick(resend_at)
    assert sends(e.take_effects()) == [2]  # the probe alone
    e.tick(T0 + SETTINGS.send_timeout)  # the followers' send timeouts: still waiting
    assert sends(e.take_effects()) == []
    # refused again: a longer backoff, still alone
    e.receive(Rejected(id=item(2).id, conv=C, code="rate_limited"), resend_at + 0.1)
    (again,) = only(e.take_effects(), engine.SendDeferred)
    assert isinstance(again, engine.SendDeferred) and again.retry_in > deferred.retry_in / 2
    e.tick(resend_at + 0.1 + again.retry_in)
    assert sends(e.take_effects()) == [2]
    # accepted: the rest goes, in the order written, pipelined
    e.receive(Accepted(id=item(2).id, conv=C, seq=2, ts=2), resend_at + 3)
    assert sends(e.take_effects()) == [3, 4, 5, 6]
    for seq, n in enumerate((3, 4, 5, 6), start=3):
        e.receive(Accepted(id=item(n).id, conv=C, seq=seq, ts=seq), resend_at + 3)
    e.receive(Accepted(id=item(7).id, conv="c2", seq=1, ts=1), resend_at + 3)
    assert not e.outbox
    e.send(item(8), Text(body="8"), 1, resend_at + 4)  # unblocked: straight out again
    assert sends(e.take_effects()) == [8]


def test_the_probe_is_the_first_unanswered_message_of_the_conversation() -> None:
    e = new_engine()
    online(e)
    for n in (1, 2, 3):
        e.send(item(n), Text(body=str(n)), 1, T0)
    e.take_effects()
    # 2 is refused while 1 is still on its way: 1 is the probe, 2 and 3 wait for it
    e.receive(Rejected(id=item(2).id, conv=C, code="rate_limited"), T0)
    e.take_effects()
    wake = e.next_wakeup()
    assert wake is not None and wake < T0 + 1
    e.tick(wake)
    assert sends(e.take_effects()) == [1]
    # 1 was on its way before the refusal and never refused: its Accepted does not say that
    # the server takes messages again (its answer may be the first copy's). 2 is the probe.
    e.receive(Accepted(id=item(1).id, conv=C, seq=1, ts=1), wake)
    assert sends(e.take_effects()) == []
    wake = e.next_wakeup()
    assert wake is not None
    e.tick(wake)
    assert sends(e.take_effects()) == [2]
    e.receive(Accepted(id=item(2).id, conv=C, seq=2, ts=2), wake)
    assert sends(e.take_effects()) == [3]


def test_answers_to_messages_sent_before_the_refusal_do_not_release_the_rest() -> None:
    # A store slower than the client (PostgreSQL, one transaction per message of a
    # conversation): 3 is refused while 1 and 2 are still being stored. Their Accepteds come
    # one by one; neither may send the rest again (each such burst would meet the server's
    # hold again, and one reaching it as the hold ends would be half refused, half stored).
    e = new_engine()
    online(e)
    for n in range(1, 6):
        e.send(item(n), Text(body=str(n)), 1, T0)
    e.take_effects()
    e.receive(Rejected(id=item(3).id, conv=C, code="rate_limited"), T0 + 0.01)
    e.receive(Rejected(id=item(4).id, conv=C, code="rate_limited"), T0 + 0.01)
    e.receive(Accepted(id=item(1).id, conv=C, seq=1, ts=1), T0 + 0.02)
    e.receive(Accepted(id=item(2).id, conv=C, seq=2, ts=2), T0 + 0.03)
    assert sends(e.take_effects()) == []
    wake = e.next_wakeup()
    assert wake is not None
    e.tick(wake)
    assert sends(e.take_effects()) == [3]  # the refused message goes alone
    e.receive(Accepted(id=item(3).id, conv=C, seq=3, ts=3), wake + 0.01)
    assert sends(e.take_effects()) == [4, 5]
    # the refused message gone for good before the probe's answer: nothing left to wait for
    e.receive(Rejected(id=item(5).id, conv=C, code="rate_limited"), wake + 0.02)
    e.receive(Rejected(id=item(5).id, conv=C, code="not_member"), wake + 0.03)
    e.receive(Accepted(id=item(4).id, conv=C, seq=4, ts=4), wake + 0.04)
    e.send(item(6), Text(body="6"), 1, wake + 0.05)
    assert sends(e.take_effects()) == [6]


def test_a_new_connection_sends_everything_again_in_order() -> None:
    e = new_engine()
    online(e)
    for n in (1, 2, 3):
        e.send(item(n), Text(body=str(n)), 1, T0)
    e.take_effects()
    e.receive(Rejected(id=item(2).id, conv=C, code="rate_limited"), T0)
    e.disconnected(T0 + 1, "closed")
    e.tick(T0 + 100)
    e.connected(T0 + 100)
    e.receive(welcome(), T0 + 100)
    # the server's order gate belongs to the old connection: the outbox starts over
    assert sends(e.take_effects()) == [1, 2, 3]


def test_a_probe_that_fails_for_good_or_is_echoed_releases_the_rest() -> None:
    e = new_engine()
    online(e)
    for n in (1, 2, 3):
        e.send(item(n), Text(body=str(n)), 1, T0)
    e.take_effects()
    e.receive(Error(code="overloaded", ref=str(item(1).id)), T0)  # a transient error blocks too
    e.send(item(4), Text(body="4"), 1, T0)
    assert sends(e.take_effects()) == []
    e.receive(Rejected(id=item(1).id, conv=C, code="not_member"), T0 + 1)
    effects = e.take_effects()
    assert only(effects, engine.MarkFailed) == [engine.MarkFailed(item(1).id, "not_member")]
    assert sends(effects) == [2, 3, 4]
    e.receive(Rejected(id=item(2).id, conv=C, code="quota_exceeded"), T0 + 2)
    e.take_effects()
    own = Envelope(conv=C, seq=1, id=item(2).id, sender=ME, sender_device=1, ts=1, payload=b"p")
    e.receive(own, T0 + 3)  # the probe echoed before its Accepted: stored after all
    assert sends(e.take_effects()) == [3, 4]
