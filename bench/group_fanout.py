"""Fan-out to a 1,000-member group with every member online: post → every member has it.

    python -m bench.group_fanout [--members 1000] [--posts 20]

A real server process is started on a free loopback port with a temporary data directory. The
members are made through the REST API and kept online by raw protocol connections
(``websockets`` + the protocol frames) from this process; each member acks what it receives,
as a client does. The admin posts ``--posts`` times, one after the other; for each post the
time from sending it until the last member has decoded it is measured (p50/p99 over posts),
as is each member's own send → receive latency (p50/p99 over all posts and members) and the time
until the server's receipts tell the poster that every member has it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from bench.delivery_1to1 import latency_ms, write_result
from bench.loadgen import (
    Account,
    connect_device,
    create_accounts,
    create_group,
    free_port,
    install_uvloop,
    raise_nofile,
    tidings_server,
)
from tidings.client.ids import new_message_id
from tidings.protocol import frames as fr
from tidings.protocol.content import Text, encode_content

#: Bound on waiting for one post to reach everyone (seconds).
POST_TIMEOUT = 60.0


class Fanout:
    """Every member online; tracks who has which post."""

    def __init__(self, conv: str, admin: Account, members: Sequence[Account]) -> None:
        self.conv = conv
        self.admin = admin
        self.members = members
        self.sockets: list[ClientConnection] = []
        self.admin_ws: ClientConnection | None = None
        self.current: uuid.UUID | None = None
        self.arrivals: list[float] = []
        self.everyone = asyncio.Event()
        self.delivered: dict[str, int] = {}
        self.errors: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.accepted = asyncio.Event()
        self.accepted_seq = 0

    async def connect(self, ws_url: str, parallel: int = 100) -> float:
        started = time.perf_counter()
        gate = asyncio.Semaphore(parallel)

        async def one(account: Account) -> ClientConnection:
            async with gate:
                ws, _ = await connect_device(ws_url, account.token)
                return ws

        self.sockets = list(await asyncio.gather(*(one(m) for m in self.members)))
        self.admin_ws, _ = await connect_device(ws_url, self.admin.token)
        elapsed = time.perf_counter() - started
        self.tasks = [asyncio.create_task(self._member(ws)) for ws in self.sockets]
        self.tasks.append(asyncio.create_task(self._admin()))
        return elapsed

    async def _member(self, ws: ClientConnection) -> None:
        decode = fr.decode_server_frame
        while True:
            frame = decode(await ws.recv(decode=False))
            envelopes = [frame] if isinstance(frame, fr.Envelope) else []
            if isinstance(frame, fr.Batch):
                envelopes = frame.envelopes
            elif isinstance(frame, fr.Error) and len(self.errors) < 10:
                self.errors.append(repr(frame))
            for env in envelopes:
                if env.id == self.current:
                    self.arrivals.append(time.perf_counter())
                    if len(self.arrivals) == len(self.members):
                        self.everyone.set()
            if envelopes:
                await ws.send(fr.encode(fr.Ack(upto={self.conv: envelopes[-1].seq})))

    async def _admin(self) -> None:
        assert self.admin_ws is not None
        while True:
            frame = fr.decode_server_frame(await self.admin_ws.recv(decode=False))
            if isinstance(frame, fr.Receipt) and frame.conv == self.conv:
                previous = self.delivered.get(frame.account, 0)
                self.delivered[frame.account] = max(previous, frame.delivered)
            elif isinstance(frame, fr.Accepted):
                self.accepted_seq = frame.seq
                self.accepted.set()
            elif isinstance(frame, fr.Rejected | fr.Error) and len(self.errors) < 10:
                self.errors.append(repr(frame))

    async def post(self, n: int) -> tuple[float, list[float], float | None]:
        """Send one post; (post → last member, each member's latency, post → all receipts)."""
        assert self.admin_ws is not None
        mid = new_message_id()
        self.current = mid
        self.arrivals = []
        self.everyone.clear()
        self.accepted.clear()
        payload = encode_content(Text(body=f"announcement number {n}"))
        sent = time.perf_counter()
        await self.admin_ws.send(fr.encode(fr.Send(id=mid, conv=self.conv, payload=payload)))
        await asyncio.wait_for(self.everyone.wait(), POST_TIMEOUT)
        last = max(self.arrivals) - sent
        latencies = [t - sent for t in self.arrivals]
        await asyncio.wait_for(self.accepted.wait(), POST_TIMEOUT)
        seq = self.accepted_seq
        receipts: float | None = None
        deadline = time.perf_counter() + 10
        others = [m.account_id for m in self.members]
        while time.perf_counter() < deadline:
            if all(self.delivered.get(a, 0) >= seq for a in others):
                receipts = time.perf_counter() - sent
                break
            await asyncio.sleep(0.002)
        return last, latencies, receipts

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        sockets = [*self.sockets, *([self.admin_ws] if self.admin_ws else [])]
        for start in range(0, len(sockets), 200):
            with contextlib.suppress(Exception):
                await asyncio.gather(
                    *(ws.close() for ws in sockets[start : start + 200]), return_exceptions=True
                )


async def run(members: int, posts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = tidings_server(Path(tmp) / "server", port)
        with server:
            await asyncio.to_thread(server.wait_http, f"{url}/v1/health")
            setup_started = time.perf_counter()
            accounts = await create_accounts(
                url, ["admin", *(f"member{i:05d}" for i in range(members - 1))]
            )
            admin, others = accounts[0], accounts[1:]
            conv = await create_group(url, admin, others)
            setup_seconds = time.perf_counter() - setup_started
            fanout = Fanout(conv, admin, others)
            try:
                connect_seconds = await fanout.connect(url.replace("http://", "ws://") + "/v1/ws")
                await asyncio.sleep(0.5)
                await fanout.post(-1)  # warm-up
                totals: list[float] = []
                each: list[float] = []
                receipts: list[float] = []
                for n in range(posts):
                    last, latencies, all_receipts = await fanout.post(n)
                    totals.append(last)
                    each += latencies
                    if all_receipts is not None:
                        receipts.append(all_receipts)
                    await asyncio.sleep(0.1)
            finally:
                await fanout.close()
            server.check_alive()
    return {
        "members": members,
        "online_recipients": members - 1,
        "posts": posts,
        "setup_seconds": round(setup_seconds, 2),
        "connect_seconds": round(connect_seconds, 2),
        "post_to_every_member": latency_ms(totals),
        "post_to_each_member": latency_ms(each),
        "post_to_all_receipts": latency_ms(receipts),
        "receipts_complete_for": len(receipts),
        "errors": fanout.errors,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.group_fanout", description=__doc__)
    parser.add_argument("--members", type=int, default=1000, help="group size, poster included")
    parser.add_argument("--posts", type=int, default=20)
    args = parser.parse_args(argv)
    raise_nofile()
    install_uvloop()
    data = asyncio.run(run(args.members, args.posts))
    every, each = data["post_to_every_member"], data["post_to_each_member"]
    print(
        f"group of {data['members']} (all online): post → every member has it: p50 "
        f"{every['p50_ms']:.1f} ms, p99 {every['p99_ms']:.1f} ms over {data['posts']} posts; "
        f"per member p50 {each['p50_ms']:.1f} ms, p99 {each['p99_ms']:.1f} ms; "
        f"all receipts back p50 {data['post_to_all_receipts']['p50_ms']:.1f} ms"
    )
    print(f"written to {write_result('group_fanout', data)}")


if __name__ == "__main__":
    main()
