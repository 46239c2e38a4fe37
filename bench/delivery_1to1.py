"""One sender → one receiver over loopback: end-to-end msgs/s and send → deliver latency.

    python -m bench.delivery_1to1 [--count 1000] [--rate 0] [--raw] [--window 256]

A real server process is started on a free loopback port with a temporary data directory; the
load runs in this process. By default both ends are the real client (:class:`tidings.client.
Client`: local store, outbox, runtime); ``--raw`` adds a run of a raw-protocol load generator
(``websockets`` + the protocol frames) that shows the server's own ceiling.

A message counts as done when the server accepted it (``Accepted``; status ``sent``), the
receiver stored it and the receiver's ack came back to the sender as a receipt (status
``delivered``). Throughput is messages / (last done - first send). Latency is send → the
receiving client has the message (client: its ``MessageAdded`` event, after it is stored; raw:
the envelope frame decoded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loadgen import (
    connect_device,
    create_accounts,
    free_port,
    install_uvloop,
    open_directs,
    raise_nofile,
    tidings_server,
)
from tidings.client import Client
from tidings.client.ids import new_message_id
from tidings.client.types import MessageAdded, MessageStatus, MessageUpdated
from tidings.protocol import frames as fr
from tidings.protocol.content import Text, encode_content

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Every wait in the benchmark is bounded by this many seconds.
DEADLINE = 300.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "samples": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_before": list(os.getloadavg()),
    }
    path.write_text(json.dumps({"benchmark": name, "machine": machine, **data}, indent=2) + "\n")
    return path


async def _wait(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), DEADLINE)
    except TimeoutError as exc:
        raise RuntimeError(f"gave up after {DEADLINE:g} s waiting for {what}") from exc


# --------------------------------------------------------------------------- real client


async def run_client(url: str, profiles: Path, count: int, rate: float) -> dict[str, Any]:
    sender = await Client.create_account(profiles / "sender", url, "sender")
    receiver = await Client.create_account(profiles / "receiver", url, "receiver")
    sent_at: dict[uuid.UUID, float] = {}
    received_at: dict[uuid.UUID, float] = {}
    accepted_at: dict[uuid.UUID, float] = {}
    delivered_at: dict[uuid.UUID, float] = {}
    all_received = asyncio.Event()
    all_delivered = asyncio.Event()
    goal = [20]  # the warm-up first, then the measured count

    async def watch_receiver() -> None:
        async for event in receiver.events():
            if isinstance(event, MessageAdded) and event.message.kind == "text":
                received_at.setdefault(event.message.id, time.perf_counter())
                if len(received_at) >= goal[0]:
                    all_received.set()

    async def watch_sender() -> None:
        async for event in sender.events():
            if not isinstance(event, MessageUpdated):
                continue
            now = time.perf_counter()
            status = event.message.status
            if status != MessageStatus.SENDING:
                accepted_at.setdefault(event.message.id, now)
            if status in (MessageStatus.DELIVERED, MessageStatus.READ):
                delivered_at.setdefault(event.message.id, now)
                if len(delivered_at) >= goal[0]:
                    all_delivered.set()

    watchers = [asyncio.create_task(watch_receiver()), asyncio.create_task(watch_sender())]
    await asyncio.sleep(0)
    try:
        await sender.start()
        await receiver.start()
        await sender.wait_synced(timeout=30)
        await receiver.wait_synced(timeout=30)
        conv = await sender.open_direct("receiver")

        # warm-up: a few messages through the whole path, not measured
        for i in range(20):
            await sender.send_text(conv.id, f"warm-up {i}")
        await _wait(all_delivered, "the warm-up messages")
        goal[0] = count
        for table in (received_at, accepted_at, delivered_at):
            table.clear()
        all_received.clear()
        all_delivered.clear()

        interval = 1.0 / rate if rate > 0 else 0.0
        started = time.perf_counter()
        for i in range(count):
            before = time.perf_counter()
            message = await sender.send_text(conv.id, f"benchmark message {i:06d}")
            sent_at[message.id] = before
            if interval:
                delay = started + (i + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        queued = time.perf_counter()
        if len(received_at) >= count:
            all_received.set()
        if len(delivered_at) >= count:
            all_delivered.set()
        await _wait(all_received, "the receiver to get every message")
        await _wait(all_delivered, "every message to be delivered")
        finished = max(delivered_at[i] for i in sent_at)
    finally:
        for task in watchers:
            task.cancel()
        await sender.close()
        await receiver.close()
    elapsed = finished - started
    return {
        "path": "client",
        "count": count,
        "rate_limit": rate or None,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(count / elapsed, 1),
        "send_text_calls_per_s": round(count / (queued - started), 1),
        "send_to_receive": latency_ms([received_at[i] - sent_at[i] for i in sent_at]),
        "send_to_accepted": latency_ms([accepted_at[i] - sent_at[i] for i in sent_at]),
        "send_to_delivered_status": latency_ms([delivered_at[i] - sent_at[i] for i in sent_at]),
    }


# --------------------------------------------------------------------------- raw protocol


async def run_raw(url: str, count: int, window: int, rate: float) -> dict[str, Any]:
    sender_acct, receiver_acct = await create_accounts(url, ["rawsender", "rawreceiver"])
    (conv,) = await open_directs(url, [(sender_acct, receiver_acct)])
    ws_url = url.replace("http://", "ws://", 1) + "/v1/ws"
    sender, _ = await connect_device(ws_url, sender_acct.token)
    receiver, _ = await connect_device(ws_url, receiver_acct.token)
    payload = encode_content(Text(body="x" * 64))
    slots = asyncio.Semaphore(window)
    sent_at: dict[uuid.UUID, float] = {}
    received_at: dict[uuid.UUID, float] = {}
    accepted_at: dict[uuid.UUID, float] = {}
    seq_of: dict[int, uuid.UUID] = {}
    delivered_upto = [0]
    highest = [0]
    ack_due = asyncio.Event()
    done = asyncio.Event()
    finished = [0.0]
    errors: list[str] = []

    def check_done() -> None:
        if (
            len(accepted_at) == count
            and len(received_at) == count
            and seq_of
            and delivered_upto[0] >= max(seq_of)
        ):
            finished[0] = time.perf_counter()
            done.set()

    async def sender_reader() -> None:
        while True:
            frame = fr.decode_server_frame(await sender.recv(decode=False))
            if isinstance(frame, fr.Accepted):
                accepted_at[frame.id] = time.perf_counter()
                seq_of[frame.seq] = frame.id
                slots.release()
            elif isinstance(frame, fr.Receipt) and frame.account == receiver_acct.account_id:
                delivered_upto[0] = max(delivered_upto[0], frame.delivered)
            elif isinstance(frame, fr.Rejected | fr.Error):
                errors.append(repr(frame))
            check_done()

    async def receiver_reader() -> None:
        while True:
            frame = fr.decode_server_frame(await receiver.recv(decode=False))
            envelopes = [frame] if isinstance(frame, fr.Envelope) else []
            if isinstance(frame, fr.Batch):
                envelopes = frame.envelopes
            now = time.perf_counter()
            for env in envelopes:
                received_at.setdefault(env.id, now)
                highest[0] = max(highest[0], env.seq)
            if envelopes:
                ack_due.set()
            check_done()

    async def ack_loop() -> None:
        # one Ack per burst, like a client that persists what one read gave it
        acked = 0
        while True:
            await ack_due.wait()
            ack_due.clear()
            if highest[0] > acked:
                acked = highest[0]
                await receiver.send(fr.encode(fr.Ack(upto={conv: acked})))

    tasks = [asyncio.create_task(c) for c in (sender_reader(), receiver_reader(), ack_loop())]
    interval = 1.0 / rate if rate > 0 else 0.0
    try:
        started = time.perf_counter()
        for i in range(count):
            await slots.acquire()
            mid = new_message_id()
            sent_at[mid] = time.perf_counter()
            await sender.send(fr.encode(fr.Send(id=mid, conv=conv, payload=payload)))
            if interval:
                delay = started + (i + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await _wait(done, "every raw message to be accepted, received and acked")
    finally:
        for task in tasks:
            task.cancel()
        for ws in (sender, receiver):
            with contextlib.suppress(Exception):
                await ws.close()
    elapsed = finished[0] - started
    return {
        "path": "raw",
        "count": count,
        "window": window,
        "rate_limit": rate or None,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(count / elapsed, 1),
        "send_to_receive": latency_ms([received_at[i] - sent_at[i] for i in sent_at]),
        "send_to_accepted": latency_ms([accepted_at[i] - sent_at[i] for i in sent_at]),
        "errors": errors[:10],
    }


# --------------------------------------------------------------------------- main


def summary_line(result: dict[str, Any]) -> str:
    latency = result["send_to_receive"]
    return (
        f"{result['path']:>6}: {result['count']} msgs in {result['seconds']:.2f} s = "
        f"{result['msgs_per_s']:,.0f} msgs/s end-to-end; send→deliver p50 "
        f"{latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = tidings_server(Path(tmp) / "server", port)
        with server:
            await asyncio.to_thread(server.wait_http, f"{url}/v1/health")
            runs = []
            if not args.raw_only:
                runs.append(await run_client(url, Path(tmp) / "profiles", args.count, args.rate))
            if args.raw or args.raw_only:
                runs.append(await run_raw(url, args.count, args.window, args.rate))
            server.check_alive()
    return {"count": args.count, "runs": runs}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_1to1", description=__doc__)
    parser.add_argument("--count", type=int, default=1000, help="messages per run")
    parser.add_argument("--rate", type=float, default=0.0, help="msgs/s to send at (0: burst)")
    parser.add_argument("--raw", action="store_true", help="also run the raw-protocol load")
    parser.add_argument("--raw-only", action="store_true", help="only the raw-protocol load")
    parser.add_argument("--window", type=int, default=256, help="raw: messages in flight")
    args = parser.parse_args(argv)
    raise_nofile()
    install_uvloop()
    data = asyncio.run(run(args))
    for result in data["runs"]:
        print(summary_line(result))
    print(f"written to {write_result('delivery_1to1', data)}")


if __name__ == "__main__":
    main()
