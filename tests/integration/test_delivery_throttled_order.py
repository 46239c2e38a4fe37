"""Messages throttled by the server's send rate limits are still stored in the order they were
written: the server holds a limited device (server/sendlimits.py) and the client engine holds
the rest of the conversation back until the refused message is accepted (client/core/engine.py).
One client sends 300 messages as fast as it can, far over a small burst, through the real
:class:`Client` against a real ``tidings serve``; and frame by frame, a follower of a refused
message that reaches the server after the hold ended is refused too."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.types import MessageStatus
from tidings.protocol import Accepted, ErrorCode, Rejected, Send

COUNT = 300
BURST = 50
RATE = 50
#: a small per-device burst, so that alice is limited several times; the account limits out of
#: the way, so that the device's are the ones that bite
SERVER_ENV = {
    "TIDINGS_SEND_BURST_DEVICE": str(BURST),
    "TIDINGS_SEND_RATE_DEVICE": str(RATE),
    "TIDINGS_SEND_BURST_ACCOUNT": "100000",
    "TIDINGS_SEND_RATE_ACCOUNT": "100000",
}


@pytest.mark.timeout(240)
async def test_a_throttled_flood_is_stored_once_in_written_order(
    server: Any, tmp_path: Path, wait_until: Any, full_history: Any
) -> None:
    url: str = server.url
    alice = await Client.create_account(tmp_path / "alice", url, "alice")
    bob = await Client.create_account(tmp_path / "bob", url, "bob")
    try:
        await alice.start()
        await bob.start()
        await alice.wait_synced(timeout=20)
        await bob.wait_synced(timeout=20)
        conv = await alice.open_direct("bob")
        started = time.monotonic()
        sent: list[uuid.UUID] = []
        for i in range(COUNT):
            sent.append((await alice.send_text(conv.id, f"flood {i:03d}")).id)

        async def all_sent() -> bool:
            for message_id in sent:
                message = await alice.message(message_id)
                assert message is not None and message.status is not MessageStatus.FAILED
                if message.status is MessageStatus.SENDING:
                    return False
            return True

        await wait_until(all_sent, 150, "alice's messages to be accepted", every=0.5)
        # The bucket cannot have let them through any faster: alice was limited.
        assert time.monotonic() - started >= (COUNT - BURST) / RATE * 0.8

        async def bob_has_all() -> bool:
            history = await full_history(bob, conv.id)
            return sum(1 for m in history if m.kind == "text") >= COUNT

        await wait_until(bob_has_all, 60, "bob to store every message")
        history = [m for m in await full_history(bob, conv.id) if m.kind == "text"]
        # exactly once, in the order written, and that order is seq order
        assert [m.id for m in history] == sent
        assert [m.body for m in history] == [f"flood {i:03d}" for i in range(COUNT)]
        seqs = [m.seq for m in history]
        assert all(s is not None for s in seqs)
        assert seqs == sorted(set(seqs))
        mine = [await alice.message(message_id) for message_id in sent]
        assert [m.seq for m in mine if m is not None] == seqs
    finally:
        await alice.close()
        await bob.close()


async def test_a_follower_arriving_after_the_hold_waits_for_the_refused_message(
    server_factory: Any, server_kit: Any
) -> None:
    # What a busy server sees when it reads a burst slower than the hold lasts (or when a
    # client sends its held-back messages again before the refused one was stored): message k
    # is refused, and k+1 arrives once the hold is over and the bucket has refilled. Taking it
    # would store k+1 before k. It is refused until k itself is admitted.
    # Plain payloads: the order is the server's business, sealing is not.
    kit = server_kit(server_factory(env={"TIDINGS_REQUIRE_E2EE": "false"}))
    alice, _, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    written = [uuid.uuid4() for _ in range(BURST + 30)]
    for message_id in written:  # pipelined: all on the wire before the first answer
        await a.send(Send(id=message_id, conv=conv, payload=b"x"))
    answers: dict[uuid.UUID, Accepted | Rejected] = {}
    while len(answers) < len(written):
        frame = await a.recv()
        if isinstance(frame, Accepted | Rejected):
            answers[frame.id] = frame
    k = next(i for i, message_id in enumerate(written) if isinstance(answers[message_id], Rejected))
    assert all(isinstance(answers[m], Rejected) for m in written[k:])  # the hold
    await asyncio.sleep(1.5)  # the hold (1 s) is over, the bucket has refilled

    async def send(message_id: uuid.UUID) -> Accepted | Rejected:
        await a.send(Send(id=message_id, conv=conv, payload=b"x"))
        while True:
            frame = await a.recv()
            if isinstance(frame, Accepted | Rejected) and frame.id == message_id:
                return frame

    follower = await send(written[k + 1])
    assert isinstance(follower, Rejected) and follower.code == ErrorCode.RATE_LIMITED
    accepted = [answers[m] for m in written[:k]] + [await send(m) for m in written[k:]]
    seqs = [answer.seq for answer in accepted if isinstance(answer, Accepted)]
    assert seqs == list(range(seqs[0], seqs[0] + len(written)))  # stored in the order written
