"""The outbox across crashes, lost answers and refusals (engine + fake server)."""

from __future__ import annotations

from tidings.client.core.types import MessageStatus
from tidings.protocol import Accepted, Send

from .fakeserver import Harness

CONV = "c1"


def setup() -> Harness:
    h = Harness(["alice", "bob"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.start()
    h.settle()
    return h


def test_crash_after_send_before_accepted_sends_exactly_once() -> None:
    h = setup()
    alice = h.device("alice")
    msg = alice.send_text(CONV, "survive me")
    alice.to_server()  # the Send reaches the server: stored there
    assert alice.conn is not None and isinstance(alice.conn.outgoing[-1], Accepted)
    alice.crash()  # ... but alice dies before the Accepted arrives
    assert alice.messages[msg].status is MessageStatus.SENDING
    h.settle()
    log = h.server.conversations[CONV].log
    assert [e.id for e in log].count(msg) == 1
    assert alice.messages[msg].seq == log[-1].seq
    assert alice.messages[msg].status is MessageStatus.DELIVERED
    assert h.device("bob").stored_count[msg] == 1


def test_crash_before_the_send_left_resends_the_stored_message() -> None:
    h = setup()
    alice = h.device("alice")
    msg = alice.send_text(CONV, "never left")
    alice.crash()
    h.settle()
    assert [e.id for e in h.server.conversations[CONV].log].count(msg) == 1
    assert h.device("bob").stored_count[msg] == 1


def test_lost_accepted_is_recovered_by_the_timeout_resend() -> None:
    h = setup()
    alice = h.device("alice")
    msg = alice.send_text(CONV, "hello")
    alice.to_server()
    assert alice.conn is not None
    alice.conn.outgoing.clear()  # the Accepted (and anything else) is lost
    h.advance(11)
    assert alice.conn is not None
    assert [f for f in alice.conn.incoming if isinstance(f, Send)] == [
        Send(id=msg, conv=CONV, payload=alice.engine.outbox[msg].payload)
    ]
    h.settle()
    assert [e.id for e in h.server.conversations[CONV].log].count(msg) == 1
    assert alice.messages[msg].status is not MessageStatus.SENDING


def test_refused_message_fails_and_stays_failed_until_retried() -> None:
    h = Harness(["alice", "bob"])
    h.server.create(CONV, "bob", ["bob"])  # alice is not a member
    h.start()
    h.settle()
    alice = h.device("alice")
    msg = alice.send_text(CONV, "let me in")
    h.settle()
    assert alice.messages[msg].status is MessageStatus.FAILED
    assert not alice.outbox
    h.advance(120)
    h.settle()
    assert alice.messages[msg].status is MessageStatus.FAILED
