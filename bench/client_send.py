"""The client as a bot runs it: a real :class:`~tidings.client.api.Client` sending a burst of
end-to-end-encrypted texts, and a big profile opening to its chat list.

**Send.** A server subprocess (``require_e2ee`` on, send limits raised as in the other loads)
and two accounts made through ``Client.create_account``: the bot and its peer (one device
each). The bot opens the direct conversation and sends one message first, so the Double
Ratchet session exists (a bot's steady state). Then it sends ``N`` texts as fast as the public
API lets it, twice: ``await client.send_text(...)`` in a loop (each returns once the message is
in the store as ``sending``), and ``await client.send_texts(...)`` with 100 texts per call (one
transaction for them), while one task follows ``client.events()``. Measured: msgs/s from the
first call until every one of them is ``sent`` (the server's ``Accepted``), the rate of the
calls alone (stored), this process's CPU per message (the peer is offline while the bot sends:
the process is the bot and nothing else) and the server process's. A third burst runs under
py-spy for the profile. Afterwards the peer comes online and must hold every message exactly
once, in the order sent (the bench fails otherwise).

**Chat list.** A profile with ``--messages`` messages (1,000,000 by default) over 200
conversations, built fast through the store's own write path (``LocalStore.apply`` of opened
envelopes, 500 per transaction, a share of them own and read), then closed. Timed: from
opening it as the app does at start (``Client.open``: the store, its settings and migrations
check, the engine's restored state; the full integrity check starts in the background
seconds later) to having the chat list
(``Client.conversations()``: each with its last message and unread count).

    python -m bench.client_send [--quick] [--messages N] [--sends N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import report
from bench.loadgen import LOOPBACK, cpu_seconds, free_port, start_profiler, tidings_server
from tidings.client.api import DB_NAME, TOKEN_NAME, Client
from tidings.client.core.opening import OpenedEnvelope, StoreOpened
from tidings.client.core.payload import open_payload
from tidings.client.ids import new_message_id
from tidings.client.store import LocalStore, private_dir
from tidings.client.types import Account, MessageStatus, MessageUpdated
from tidings.protocol import frames as fr
from tidings.protocol import rest
from tidings.protocol.content import Text, encode_content

Json = dict[str, Any]

#: texts per measured burst
SENDS = 20_000
#: texts per ``send_texts`` call in the batched burst
BATCH = 100
QUICK_SENDS = 5_000
#: messages of the big profile, and over how many conversations
PROFILE_MESSAGES = 1_000_000
QUICK_PROFILE_MESSAGES = 100_000
CONVERSATIONS = 200
#: times the big profile is opened (the headline is the median)
OPENS = 5
#: seconds a burst may take before the bench gives up on it
BURST_TIMEOUT = 600.0
_DONE = frozenset({MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ})


# --------------------------------------------------------------------------- send


def _body(i: int) -> str:
    return f"bot update {i}: the build finished, 3 warnings, artifacts uploaded"


async def _burst(
    bot: Client, conv: str, count: int, start: int, batch: int = 0, server_pid: int = 0
) -> Json:
    """Send ``count`` texts (``batch``: that many per ``send_texts`` call, else one
    ``send_text`` each); returns the timings once every one is ``sent``."""
    events = bot.events()
    ids: set[uuid.UUID] = set()
    done: set[uuid.UUID] = set()
    finished = asyncio.Event()
    early: set[uuid.UUID] = set()  # updates that came before the send call returned the id

    async def follow() -> None:
        async for event in events:
            if isinstance(event, MessageUpdated) and event.message.status in _DONE:
                mid = event.message.id
                if mid in ids:
                    done.add(mid)
                else:
                    early.add(mid)
                if len(done) == count:
                    finished.set()

    watcher = asyncio.create_task(follow())
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    if batch:
        for first in range(start, start + count, batch):
            last = min(start + count, first + batch)
            for message in await bot.send_texts(conv, [_body(i) for i in range(first, last)]):
                ids.add(message.id)
    else:
        for i in range(start, start + count):
            ids.add((await bot.send_text(conv, _body(i))).id)
    stored_s = time.perf_counter() - t0
    done |= early & ids
    if len(done) == count:
        finished.set()
    await asyncio.wait_for(finished.wait(), BURST_TIMEOUT)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    server = cpu_seconds(server_pid) - server0 if server_pid else None
    watcher.cancel()
    return {
        "messages": count,
        "msgs_per_s": round(count / elapsed, 1),
        "stored_per_s": round(count / stored_s, 1),
        "seconds": round(elapsed, 3),
        "client_cpu_us_per_msg": round(1e6 * cpu / count, 1),
        "server_cpu_us_per_msg": None if server is None else round(1e6 * server / count, 1),
    }


async def _wait_sent(client: Client, message_id: uuid.UUID) -> None:
    for _ in range(600):
        found = await client.message(message_id)
        if found is not None and found.status in _DONE:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the first message was never accepted")


async def _check_peer(profile: Path, conv: str, expected: list[str]) -> float:
    """Open the peer, let it catch up and check it holds ``expected`` once each, in order;
    seconds the catch-up took."""
    peer = await Client.open(profile)
    t0 = time.perf_counter()
    try:
        await peer.start()
        bodies: list[str] = []
        deadline = time.monotonic() + BURST_TIMEOUT
        while time.monotonic() < deadline:
            await peer.wait_synced(timeout=60)
            bodies, before = [], None
            while True:
                page = await peer.history(conv, before, 500)
                bodies[:0] = [m.body for m in page.messages if m.kind == "text"]
                if page.before is None:
                    break
                before = page.before
            if len(bodies) >= len(expected):
                break
            await asyncio.sleep(0.2)
        if bodies != expected:
            missing = len(set(expected) - set(bodies))
            raise RuntimeError(
                f"the peer holds {len(bodies)} messages for {len(expected)} sent "
                f"({missing} missing, order {'kept' if sorted(bodies) != bodies else '?'})"
            )
        return time.perf_counter() - t0
    finally:
        await peer.close()


async def _send_scenario(
    url: str, work: Path, count: int, profile_to: Path, server_pid: int
) -> Json:
    bot = await Client.create_account(work / "bot", url, "bot")
    peer = await Client.create_account(work / "peer", url, "peer")
    await peer.close()  # offline while the bot sends: this process is the bot alone
    try:
        await bot.start()
        await bot.wait_synced(timeout=60)
        conv = (await bot.open_direct("peer")).id
        first = await bot.send_text(conv, _body(0))  # claims the peer's bundle: a session
        await _wait_sent(bot, first.id)
        run = await _burst(bot, conv, count, 1, server_pid=server_pid)
        batched = await _burst(bot, conv, count, 1 + count, BATCH, server_pid)
        profiler = start_profiler(os.getpid(), 600, profile_to)
        try:
            profiled = await _burst(bot, conv, count, 1 + 2 * count, batch=BATCH)
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes what it has and ends
                profiler.wait(30)
    finally:
        await bot.close()
    expected = [_body(i) for i in range(1 + 3 * count)]
    catch_up_s = await _check_peer(work / "peer", conv, expected)
    return {
        "run": run,
        "batched": batched,
        "batch": BATCH,
        "profiled_run": profiled,
        "peer_catch_up_msgs_per_s": round(len(expected) / catch_up_s, 1),
    }


def measure_send(quick: bool, work_dir: Path, count: int | None = None) -> Json:
    count = count or (QUICK_SENDS if quick else SENDS)
    work = Path(tempfile.mkdtemp(prefix="client-send-", dir=work_dir))
    port = free_port()
    server = tidings_server(work / "server", port).start()
    url = f"http://{LOOPBACK}:{port}"
    profile_to = work / "profile.txt"
    try:
        server.wait_http(f"{url}/v1/health")
        result = asyncio.run(_send_scenario(url, work, count, profile_to, server.pid))
        server.check_alive()
        result["profile"] = (
            report.summarize_profile(profile_to)
            if profile_to.exists()
            else {"error": "py-spy produced no profile (is it installed? ptrace allowed?)"}
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["note"] = (
        f"One bot device sends {count:,} texts to a direct conversation with one peer device "
        "(an established Double Ratchet session: one ciphertext per message), first in a loop "
        "of `await client.send_text(...)`, then through `client.send_texts(...)` with "
        f"{BATCH} texts per call; msgs/s from the first call until every message is sent "
        "(Accepted, as the client's events say), 'stored' the calls alone. Client CPU is "
        "this process's (the bot; the peer is offline), server CPU the server process's. A "
        "third burst (send_texts) runs under py-spy for the profile. Then the peer caught up "
        "and held every message once, in the order sent."
    )
    return result


# --------------------------------------------------------------------------- chat list


def build_profile(path: Path, messages: int, conversations: int = CONVERSATIONS) -> None:
    """A profile directory at ``path`` whose store holds ``messages`` messages over
    ``conversations`` direct conversations, written through ``LocalStore.apply`` (the path of
    a replayed Batch), with members and a read mark in each."""
    private_dir(path)
    store = LocalStore(path / DB_NAME)
    me = Account("me-account", "me", 1, "http://127.0.0.1:9")
    store.set_account(me)
    convs = [f"conv-{i:04d}" for i in range(conversations)]
    for i, conv in enumerate(convs):
        peer = f"peer-{i:04d}"
        store.save_conversation(
            rest.Conversation(
                id=conv,
                kind="direct",
                title="",
                last_seq=0,
                created_at=1,
                members=[
                    rest.Member(account_id=me.account_id, username="me", role="member"),
                    rest.Member(account_id=peer, username=f"friend{i}", role="member"),
                ],
            )
        )
    rng = random.Random(5)
    per_conv = messages // conversations
    ts = 1_700_000_000_000
    for i, conv in enumerate(convs):
        peer = f"peer-{i:04d}"
        count = per_conv + (1 if i < messages % conversations else 0)
        for start in range(0, count, fr.MAX_BATCH):
            opened = []
            for seq in range(start + 1, min(count, start + fr.MAX_BATCH) + 1):
                ts += 1
                own = rng.random() < 0.3
                text = Text(body=f"message {seq} in {conv} about {rng.randrange(10_000)}")
                env = fr.Envelope(
                    conv=conv,
                    seq=seq,
                    id=new_message_id(),
                    sender=me.account_id if own else peer,
                    sender_device=1,
                    ts=ts,
                    payload=encode_content(text),
                )
                opened.append(OpenedEnvelope(env, open_payload(env.payload)))
            store.apply([StoreOpened(conv, tuple(opened))])
        # read up to all but the last few: every chat shows an unread count
        store.db.execute(
            "UPDATE conversations SET read_upto = ? WHERE id = ?", (max(0, count - i % 7), conv)
        )
    store.close()
    (path / TOKEN_NAME).write_text("bench.token\n")
    os.chmod(path / TOKEN_NAME, 0o600)


async def _open_chat_list(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    client = await Client.open(path)
    try:
        chats = await client.conversations()
        elapsed = time.perf_counter() - t0
        if any(c.last_message is None for c in chats):
            raise RuntimeError("a chat without its last message")
        return elapsed, len(chats)
    finally:
        await client.close()


def measure_chat_list(quick: bool, work_dir: Path, messages: int | None = None) -> Json:
    messages = messages or (QUICK_PROFILE_MESSAGES if quick else PROFILE_MESSAGES)
    work = Path(tempfile.mkdtemp(prefix="client-profile-", dir=work_dir))
    try:
        t0 = time.perf_counter()
        build_profile(work / "profile", messages)
        build_s = time.perf_counter() - t0
        times: list[float] = []
        chats = 0
        for _ in range(OPENS):
            elapsed, chats = asyncio.run(_open_chat_list(work / "profile"))
            times.append(elapsed)
        size = sum(p.stat().st_size for p in (work / "profile").iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "messages": messages,
        "conversations": chats,
        "open_to_chat_list_ms": round(1000 * statistics.median(times), 1),
        "open_to_chat_list_ms_all": [round(1000 * t, 1) for t in times],
        "build_s": round(build_s, 1),
        "db_mib": round(size / 2**20, 1),
        "note": (
            f"{messages:,} messages over {CONVERSATIONS} direct conversations, built through "
            "LocalStore.apply (500 opened envelopes per transaction, 30 % own); from "
            "Client.open (store, integrity check, migrations, restored engine state) to "
            f"Client.conversations() (last message and unread count of each), median of {OPENS} "
            "opens; the first open is the one after the build (warm page cache)."
        ),
    }


def measure(quick: bool, work_dir: Path) -> Json:
    return {
        "send": measure_send(quick, work_dir),
        "chat_list": measure_chat_list(quick, work_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_send", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sends", type=int, default=0, help="texts per burst")
    parser.add_argument("--messages", type=int, default=0, help="messages of the big profile")
    parser.add_argument("--only", choices=("send", "chat_list"), default=None)
    args = parser.parse_args()
    work_dir = Path(tempfile.gettempdir())
    result: Json = {}
    if args.only in (None, "send"):
        result["send"] = measure_send(args.quick, work_dir, args.sends or None)
    if args.only in (None, "chat_list"):
        result["chat_list"] = measure_chat_list(args.quick, work_dir, args.messages or None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
