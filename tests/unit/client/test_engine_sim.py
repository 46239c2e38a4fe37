"""Two (or three) engines against the fake server, with faults injected at every step."""

from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.client.core.engine import FatalNotice, Phase
from tidings.client.core.types import MessageStatus
from tidings.server.sendlimits import SendLimiter, SendRates

from .fakeserver import RANK, Harness

CONV = "c1"


def chat() -> Harness:
    h = Harness(["alice", "bob"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.start()
    h.settle()
    return h


def check_exactly_once_in_order(h: Harness) -> None:
    for dev in h.devices.values():
        for conv_id, conv in h.server.conversations.items():
            if dev.account not in conv.members:
                continue
            joined = conv.members[dev.account]
            expected = [e for e in conv.log[joined - 1 :]]
            # every envelope of the conversation is stored once (own ones via Accepted)
            for env in expected:
                msg = dev.messages.get(env.id)
                assert msg is not None, f"{dev.account} lacks seq {env.seq}"
                assert msg.seq == env.seq
                if env.sender != dev.account:
                    assert dev.stored_count[env.id] == 1
            order = dev.stored_order[conv_id]
            assert order == sorted(order), "not stored in seq order"
            assert len(order) == len(set(order)), "stored twice"
            assert dev.cursors.get(conv_id, 0) == len(conv.log)


def check_statuses_forward(h: Harness) -> None:
    for dev in h.devices.values():
        for msg in dev.messages.values():
            ranks = [RANK[s] for s in msg.history]
            assert ranks == sorted(ranks) or msg.history[-1] is MessageStatus.SENDING, msg.history


def read_everything(h: Harness) -> None:
    h.settle()
    for dev in h.devices.values():
        for conv_id in dev.cursors:
            dev.engine.read(conv_id, dev.cursors[conv_id])
            dev.run()
    h.settle()


def test_two_engines_chat_and_statuses_reach_read() -> None:
    h = chat()
    alice, bob = h.device("alice"), h.device("bob")
    sent = [alice.send_text(CONV, f"hi {i}") for i in range(5)]
    assert all(alice.messages[i].status is MessageStatus.SENDING for i in sent)
    h.settle()
    check_exactly_once_in_order(h)
    assert {alice.messages[i].status for i in sent} == {MessageStatus.DELIVERED}
    back = bob.send_text(CONV, "hello")
    read_everything(h)
    assert {alice.messages[i].status for i in sent} == {MessageStatus.READ}
    assert bob.messages[back].status is MessageStatus.READ
    check_statuses_forward(h)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "send",
                "send",
                "pump",
                "to_server",
                "to_server",
                "to_client",
                "to_client",
                "to_client",
                "drop_in",
                "drop_out",
                "dup_out",
                "dup_in",
                "swap_out",
                "break",
                "crash",
                "tick",
                "read",
                "server_down",
            ]
        ),
        st.sampled_from(["alice", "alice:2", "bob", "carol"]),
        st.integers(min_value=0, max_value=5),
    ),
    min_size=20,
    max_size=150,
)


@settings(
    max_examples=int(os.environ.get("TIDINGS_SIM_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_faults_never_lose_or_duplicate(actions: list[tuple[str, str, int]]) -> None:
    h = Harness(["alice", "alice:2", "bob", "carol"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.server.create("c2", "bob", ["alice", "bob", "carol"])
    h.start()
    convs = {"alice": [CONV, "c2"], "alice:2": [CONV, "c2"], "bob": [CONV, "c2"], "carol": ["c2"]}
    sent: list[uuid.UUID] = []
    for action, who, n in actions:
        dev = h.device(who)
        conn = dev.conn
        match action:
            case "send":
                sent.append(dev.send_text(convs[who][n % len(convs[who])], f"m{len(sent)}"))
            case "pump":
                h.pump()
            case "to_server":
                dev.to_server()
            case "to_client":
                dev.to_client()
            case "drop_in" if conn and conn.incoming:
                conn.incoming.pop(n % len(conn.incoming))
            case "drop_out" if conn and conn.outgoing:
                conn.outgoing.pop(n % len(conn.outgoing))
            case "dup_out" if conn and conn.outgoing:
                conn.outgoing.insert(0, conn.outgoing[n % len(conn.outgoing)])
            case "dup_in" if conn and conn.incoming:
                conn.incoming.append(conn.incoming[n % len(conn.incoming)])
            case "swap_out" if conn and len(conn.outgoing) > 1:
                i = n % (len(conn.outgoing) - 1)
                conn.outgoing[i], conn.outgoing[i + 1] = conn.outgoing[i + 1], conn.outgoing[i]
            case "break":
                dev.break_connection()
            case "crash":
                dev.crash()
            case "tick":
                h.advance([0.01, 1, 5, 11, 26, 61][n])
                h.pump()
            case "read":
                conv = convs[who][n % len(convs[who])]
                dev.engine.read(conv, dev.cursors.get(conv, 0))
                dev.run()
            case "server_down":
                h.server_up = not h.server_up
            case _:
                pass
    # Heal: server up, every connection re-made so lost acks/receipts/reads are replayed.
    h.server_up = True
    h.advance(61)
    for dev in h.devices.values():
        dev.break_connection()
    h.advance(61)
    h.settle()
    check_exactly_once_in_order(h)
    for dev in h.devices.values():
        assert not dev.outbox and not dev.engine.outbox
    for msg_id in sent:
        sender = next(
            d
            for d in h.devices.values()
            if msg_id in d.messages and d.messages[msg_id].sender == d.account
        )
        assert sender.messages[msg_id].status is not MessageStatus.SENDING
    read_everything(h)
    for dev in h.devices.values():
        for msg in dev.messages.values():
            if msg.sender == dev.account and msg.seq is not None:
                assert msg.status is MessageStatus.READ, (dev.account, msg)
    check_statuses_forward(h)


def test_late_member_gets_what_follows_its_join_in_order() -> None:
    h = Harness(["alice", "bob", "carol"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.start()
    h.settle()
    alice, carol = h.device("alice"), h.device("carol")
    before = [alice.send_text(CONV, f"before {i}") for i in range(3)]
    h.settle()
    h.server.add_member(CONV, "alice", "carol")
    after = [alice.send_text(CONV, f"after {i}") for i in range(3)]
    h.settle()
    assert not any(i in carol.messages for i in before)
    assert all(carol.stored_count[i] == 1 for i in after)
    assert carol.cursors[CONV] == len(h.server.conversations[CONV].log)
    # carol reads: alice's later messages are read by everyone, the earlier ones need only bob
    read_everything(h)
    assert {alice.messages[i].status for i in before + after} == {MessageStatus.READ}
    check_statuses_forward(h)


def test_a_second_device_sees_own_messages_statuses_and_read_marks() -> None:
    h = Harness(["alice", "alice:2", "bob"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.start()
    h.settle()
    phone, laptop, bob = h.device("alice"), h.device("alice:2"), h.device("bob")
    mine = phone.send_text(CONV, "from the phone")
    h.settle()
    assert laptop.stored_count[mine] == 1
    assert laptop.messages[mine].sender == "alice"
    back = bob.send_text(CONV, "hi both")
    h.settle()
    assert phone.stored_count[back] == laptop.stored_count[back] == 1
    # bob reads: both of alice's devices see her message read
    bob.engine.read(CONV, bob.cursors[CONV])
    bob.run()
    h.settle()
    assert phone.messages[mine].status is MessageStatus.READ
    assert laptop.messages[mine].status is MessageStatus.READ
    # alice reads on the laptop: the phone learns her read mark
    laptop.engine.read(CONV, laptop.cursors[CONV])
    laptop.run()
    h.settle()
    assert phone.read_marks[CONV] == laptop.cursors[CONV]
    check_exactly_once_in_order(h)
    check_statuses_forward(h)


def test_a_removed_device_stops_for_good_while_the_others_go_on() -> None:
    h = Harness(["alice", "alice:2", "bob"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.start()
    h.settle()
    removed = h.device("alice:2")
    h.server.remove_device(removed.key)
    removed.closed_by_server(4401)
    reason = "this device was removed from the account, or its token is invalid"
    assert removed.fatal == [FatalNotice(4401, reason)]
    assert removed.engine.phase is Phase.CLOSED_FATAL
    sent = h.device("bob").send_text(CONV, "still here")
    for _ in range(20):  # a long time: no reconnect attempt, nothing delivered
        h.advance(600)
        h.pump()
    assert removed.conn is None and removed.engine.next_wakeup() is None
    assert sent not in removed.messages
    assert h.device("alice").messages[sent].status is MessageStatus.DELIVERED
    assert h.device("bob").messages[sent].status is MessageStatus.DELIVERED


def test_a_device_whose_upgrade_is_refused_with_401_never_retries() -> None:
    h = Harness(["alice", "bob"])
    h.server.create(CONV, "alice", ["alice", "bob"])
    h.server.remove_device(("bob", 1))
    h.start()
    bob = h.device("bob")
    assert bob.engine.phase is Phase.CLOSED_FATAL
    assert [notice.code for notice in bob.fatal] == [4401]
    h.advance(3600)
    assert bob.engine.phase is Phase.CLOSED_FATAL and bob.conn is None


def test_a_replaced_connection_does_not_fight_back() -> None:
    h = chat()
    alice = h.device("alice")
    alice.closed_by_server(4409)
    assert alice.engine.phase is Phase.CLOSED_FATAL
    h.advance(3600)
    assert alice.conn is None  # no reconnect: the newer connection keeps the device
    assert [notice.code for notice in alice.fatal] == [4409]


def test_a_refusal_mid_burst_still_stores_the_burst_in_written_order() -> None:
    # alice writes 40 messages at once: all 40 Sends are on the wire. The server (the real
    # SendLimiter on the harness clock) takes one frame every 20 ms and refills a token every
    # 100 ms, so message 6 is refused while tokens come back for its followers in flight.
    h = chat()
    alice, bob = h.device("alice"), h.device("bob")
    limiter = SendLimiter(SendRates(device_rate=10, device_burst=5, hold=1.0), lambda: h.now)
    refused = 0

    def admit(account: str, device: int, size: int) -> bool:
        nonlocal refused
        admitted = limiter.admit(account, device, size)
        refused += not admitted
        return admitted

    h.server.limiter = admit
    written = [alice.send_text(CONV, f"m{i}") for i in range(40)]
    for _ in range(10_000):
        h.advance(0.02)
        alice.to_server()
        while alice.to_client() or bob.to_server() or bob.to_client():
            pass
        if not alice.engine.outbox:
            break
    h.settle()
    assert refused > 5  # limited more than once
    log = [env.id for env in h.server.conversations[CONV].log if env.kind == "msg"]
    assert log == written  # seq order is written order
    check_exactly_once_in_order(h)
    mine = set(written)
    received = sorted((m.seq or 0, i) for i, m in bob.messages.items() if i in mine)
    assert [i for _, i in received] == written
    assert {alice.messages[i].status for i in written} == {MessageStatus.DELIVERED}
