"""One channel post to many subscribers: until it is durable and queued, until every online
subscriber has it, and the server's memory per subscriber; with the in-process queue and with
NATS JetStream.

    python -m bench.channels [--subscribers 50000] [--online 15000] [--nats]

A real server process is started on a free loopback port with a temporary data directory. The
subscribers are made through the REST API (accounts, then one subscription each, many requests
at a time); as many as the open-files limit allows stay online through raw protocol
connections from this process (the rest are offline: their devices read the log when they come
back), each counting ``ChannelPosted`` frames. The owner posts once (a stand-in signature: the
server never checks it). Measured: the time until ``POST …/posts`` is answered (the post is in
the log, fsynced, and queued for the fan-out), the time from the post until each online
subscriber has decoded its frame (p50/p99/max), the server's RSS per subscriber (after the
subscriptions, over the RSS before them) and per online connection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from bench.loadgen import (
    Account,
    connect_device,
    create_accounts,
    free_port,
    install_uvloop,
    raise_nofile,
    rss_bytes,
    tidings_server,
    ws_url,
)
from tidings.protocol import frames as fr
from tidings.protocol.channels import encode_content

#: file descriptors kept free for the process itself (logs, the HTTP pool, the server pipe)
SPARE_FDS = 600
POST_TIMEOUT = 120.0


def _pct(times: Sequence[float], q: float) -> float | None:
    if not times:
        return None
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def _subscribe(url: str, channel: str, accounts: Sequence[Account], par: int) -> None:
    limits = httpx.Limits(max_connections=par, max_keepalive_connections=par)
    queue = list(accounts)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def worker() -> None:
            while queue:
                account = queue.pop()
                r = await http.post(
                    f"/v1/channels/{channel}/subscription", json={}, headers=account.auth()
                )
                if r.status_code != 200:
                    raise RuntimeError(f"subscribe: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(par)))


async def _connect_all(url: str, accounts: Sequence[Account], par: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(par)

    async def one(account: Account) -> ClientConnection:
        async with gate:
            ws, _ = await connect_device(url, account.token)
            return ws

    return list(await asyncio.gather(*(one(a) for a in accounts)))


async def _wait_post(ws: ClientConnection, channel: str, arrivals: list[float]) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(POST_TIMEOUT):
            while True:
                frame = fr.decode_server_frame(await ws.recv(decode=False))
                if isinstance(frame, fr.ChannelPosted) and frame.post.channel == channel:
                    arrivals.append(time.perf_counter())
                    return


async def measure(url: str, pid: int, subscribers: int, online: int) -> dict[str, Any]:
    started = time.perf_counter()
    names = [f"c{i:06d}" for i in range(subscribers + 1)]
    owner, *readers = await create_accounts(url, names, concurrency=64)
    made_accounts = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        r = await http.post(
            "/v1/channels", json={"title": "Bench", "public": True}, headers=owner.auth()
        )
        channel = r.json()["id"]
    rss_before = rss_bytes(pid)
    await _subscribe(url, channel, readers, 64)
    rss_subscribed = rss_bytes(pid)
    subscribed = time.perf_counter()
    sockets = await _connect_all(ws_url(url), readers[:online], 64)
    rss_online = rss_bytes(pid)
    connected = time.perf_counter()

    arrivals: list[float] = []
    waiting = [asyncio.ensure_future(_wait_post(ws, channel, arrivals)) for ws in sockets]
    await asyncio.sleep(0.5)
    body = {
        "id": str(uuid.uuid4()),
        "ts": int(time.time() * 1000),
        "content": base64.b64encode(encode_content("one post to everyone")).decode(),
        "signature": base64.b64encode(os.urandom(64)).decode(),
    }
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        sent = time.perf_counter()
        r = await http.post(f"/v1/channels/{channel}/posts", json=body, headers=owner.auth())
        accepted = time.perf_counter()
    if r.status_code != 200:
        raise RuntimeError(f"post: {r.status_code} {r.text[:200]}")
    await asyncio.gather(*waiting)
    lat = [t - sent for t in arrivals]
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()
    return {
        "subscribers": subscribers,
        "online": online,
        "received": len(arrivals),
        "accepted_ms": round((accepted - sent) * 1000, 1),
        "all_online_ms": round(max(lat) * 1000, 1) if lat else None,
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "bytes_per_subscriber": round((rss_subscribed - rss_before) / max(1, subscribers)),
        "bytes_per_online": round((rss_online - rss_subscribed) / max(1, online)),
        "setup_s": {
            "accounts": round(made_accounts - started, 1),
            "subscriptions": round(subscribed - made_accounts, 1),
            "connections": round(connected - subscribed, 1),
        },
    }


def online_cap(wanted: int) -> int:
    """As many sockets as this process's open-files limit allows (after raising it)."""
    limit = raise_nofile()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, min(wanted, min(limit, soft) - SPARE_FDS))


def run(subscribers: int, online: int, nats: bool, work: Path) -> dict[str, Any]:
    from tests.integration.channel_kit import nats_server

    online = online_cap(min(online, subscribers))
    port = free_port()
    with contextlib.ExitStack() as stack:
        if nats:
            url = stack.enter_context(nats_server(work / "nats", free_port()))
            os.environ["TIDINGS_NATS_URL"] = url
            os.environ["TIDINGS_NATS_NODE"] = "bench1"
        else:
            os.environ.pop("TIDINGS_NATS_URL", None)
        os.environ["TIDINGS_IDLE_TIMEOUT"] = "900"
        server = stack.enter_context(tidings_server(work / "server", port))
        result = asyncio.run(measure(f"http://127.0.0.1:{port}", server.pid, subscribers, online))
        server.check_alive()
    result["queue"] = "nats" if nats else "embedded"
    return result


def part(subscribers: int = 50_000, online: int = 15_000) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for nats in (False, True):
        with tempfile.TemporaryDirectory(prefix="tidings-bench-channels-") as tmp:
            out["nats" if nats else "embedded"] = run(subscribers, online, nats, Path(tmp))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=50_000)
    parser.add_argument("--online", type=int, default=15_000)
    parser.add_argument("--nats", action="store_true", help="only the NATS run")
    parser.add_argument("--embedded", action="store_true", help="only the in-process run")
    args = parser.parse_args(argv)
    install_uvloop()
    modes = [False] if args.embedded else [True] if args.nats else [False, True]
    results = {}
    for nats in modes:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-channels-") as tmp:
            results["nats" if nats else "embedded"] = run(
                args.subscribers, args.online, nats, Path(tmp)
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
