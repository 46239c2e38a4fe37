"""One channel post to many subscribers: until it is durable and queued, until every online
subscriber has it, the server's memory, and how fast offline subscribers catch up; with the
in-process queue and with NATS JetStream.

    python -m bench.channels [--subscribers 50000] [--online 15000] [--nats | --embedded]

The subscribers are made before the server starts, in bulk, through the SQLite store's own
methods (``create_account``, ``create_channel``, ``subscribe``: the same transactions the REST
routes run, group-committed a thousand at a time) into a data directory that each run copies.
Signing 50,000 accounts up over REST took minutes and measured nothing this benchmark is
about. A real server process then starts on a free loopback port (and, for the NATS run, a
nats-server with JetStream on another).

As many subscribers as the open-files limits allow stay online (``--online``, capped by the
server's RLIMIT_NOFILE less a margin): raw protocol connections (Hello → Synced, then only
reading) held by load processes, each from its own loopback source address, each recording
when its ``ChannelPosted`` frame arrived (CLOCK_MONOTONIC: one clock for every process of the
machine). The rest are offline. The owner posts once (a stand-in signature: the server never
checks signatures; clients do).

Measured: the time until ``POST …/posts`` is answered (the post is in the log, fsynced, and
queued: handed to the in-process pump, or acknowledged by the JetStream stream); the time from
the post until each online subscriber decoded its frame (p50/p99/max; the load processes'
own decoding is part of it: they share the machine's cores with the server); the server's
RSS when started, with everybody online and after the post, per online connection and per
subscriber; the server's CPU for the fan-out; and for a sample of offline subscribers the time
to catch up as the client does after a connect (Hello → Synced, the channel list, the newest
page of posts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from bench.loadgen import (
    BENCH_DIR,
    LOOPBACK,
    NET_TIMEOUT,
    ServerProcess,
    connect_device,
    cpu_seconds,
    free_port,
    http_limits,
    install_uvloop,
    raise_nofile,
    rss_bytes,
    tidings_server,
    ws_url,
)
from tidings.client.ids import new_message_id
from tidings.protocol import frames as fr
from tidings.protocol.channels import encode_content

Json = dict[str, Any]

#: Descriptors the server keeps for other things than subscribers' sockets (its database and
#: readers, the listening socket, NATS, REST requests of the measurement).
SERVER_FD_MARGIN = 1_000
#: Descriptors a load process keeps for itself.
LOAD_FD_MARGIN = 300
#: Load processes at least (they share the decoding of the online subscribers' frames).
LOAD_PROCESSES = 2
#: Connections a load process opens at once.
OPEN_CONCURRENCY = 100
#: Seconds the online subscribers are given to receive the post.
POST_TIMEOUT = 120.0
#: Offline subscribers that catch up after the post, and how many at once.
CATCH_UP_SAMPLE = 200
CATCH_UP_CONCURRENCY = 20
#: Store operations in flight at once while seeding (the writer commits up to 1,000 at once).
SEED_CHUNK = 5_000
#: The server counts as idle below this share of a core over two samples in a row.
QUIET_SHARE = 0.10
QUIET_SAMPLE = 0.5
#: Seconds to wait for the server to become idle after the connects, at most.
QUIET_LIMIT = 60.0
#: The client's first page of a channel it has no cursor in (client/channel_sync.py PAGE).
FIRST_PAGE = 50


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Seeded:
    """A data directory with an owner, a public channel and its subscribers."""

    data_dir: Path
    channel: str
    owner_token: str
    #: one bearer token per subscriber (device 1 of its own account)
    tokens: list[str]
    seconds: float


async def _seed(data_dir: Path, subscribers: int) -> Seeded:
    # Imported here: the load processes and the report never need the server's modules.
    from tidings.server.auth import new_token
    from tidings.server.delivery import new_id, now_ms
    from tidings.server.store.sqlite import SqliteStore

    started = time.monotonic()
    database = data_dir / "tidings.sqlite3"
    store = SqliteStore(database, synchronous="normal")  # set-up only: the server runs FULL
    await store.open()
    try:
        now = now_ms()
        ids: list[str] = []
        tokens: list[str] = []

        async def account(i: int) -> None:
            token = new_token()
            await store.create_account(
                account_id=ids[i], username=f"reader{i:06d}" if i else "owner", device_name="bench",
                token_key=token.key, token_hash=token.secret_hash, now=now,
            )  # fmt: skip
            tokens[i] = token.token

        total = subscribers + 1  # index 0 is the owner
        ids = [new_id("a") for _ in range(total)]
        tokens = [""] * total
        for start in range(0, total, SEED_CHUNK):
            await asyncio.gather(
                *(account(i) for i in range(start, min(total, start + SEED_CHUNK)))
            )
        channel = "h" + uuid.uuid4().hex
        await store.create_channel(channel, "Bench", "bench", True, "", ids[0], now)
        for start in range(1, total, SEED_CHUNK):
            chunk = ids[start : start + SEED_CHUNK]
            await asyncio.gather(*(store.subscribe(channel, a, now) for a in chunk))
        record = await store.channel(channel)
        assert record is not None and record.subscribers == total, record
    finally:
        await store.close()
    return Seeded(data_dir, channel, tokens[0], tokens[1:], time.monotonic() - started)


def seed(data_dir: Path, subscribers: int) -> Seeded:
    """The owner (token ``owner_token``), a public channel and ``subscribers`` accounts in it,
    stored in ``data_dir`` (made as `tidings serve` makes it: 0700, the database 0600)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(data_dir / "tidings.sqlite3", os.O_RDWR | os.O_CREAT, 0o600))
    return asyncio.run(_seed(data_dir, subscribers))


# --------------------------------------------------------------------------- load processes


async def _worker() -> None:
    """Holds online subscribers. stdin: a JSON set-up line (url, channel, tokens, address);
    answers with a JSON line once they are connected; ``collect SECONDS`` answers with the
    arrival times of the post (CLOCK_MONOTONIC) once every socket has it or SECONDS passed;
    EOF or ``quit`` ends it."""
    loop = asyncio.get_running_loop()
    setup = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    url, channel, address = setup["url"], setup["channel"], setup["address"]
    tokens: list[str] = setup["tokens"]
    held: list[ClientConnection] = []
    arrivals: list[float] = []
    failures: list[str] = []
    done = asyncio.Event()
    readers: list[asyncio.Task[None]] = []

    async def read(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = fr.decode_server_frame(await ws.recv(decode=False))
                if isinstance(frame, fr.ChannelPosted) and frame.post.channel == channel:
                    arrivals.append(time.monotonic())
                    if len(arrivals) >= len(held):
                        done.set()
                    return

    queue = list(reversed(tokens))

    async def opener() -> None:
        while queue:
            token = queue.pop()
            for attempt in range(3):
                try:
                    ws, _ = await connect_device(url, token, local_addr=(address, 0))
                except Exception as exc:
                    if attempt == 2:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    else:
                        await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                held.append(ws)
                readers.append(asyncio.ensure_future(read(ws)))
                break

    t0 = time.monotonic()
    await asyncio.gather(*(opener() for _ in range(OPEN_CONCURRENCY)))
    answer: Json = {
        "open": len(held),
        "seconds": round(time.monotonic() - t0, 2),
        "failed": len(failures),
        "failures": failures[:3],
    }
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            return
        cpu0 = time.process_time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(line[1])):
                await done.wait()
        answer = {
            "arrivals": arrivals,
            "missing": len(held) - len(arrivals),
            "cpu_s": round(time.process_time() - cpu0, 3),
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class _LoadProcess:
    def __init__(self, url: str, channel: str, tokens: list[str], address: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.channels", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR.parent,
            preexec_fn=raise_nofile,
        )
        setup = {"url": url, "channel": channel, "tokens": tokens, "address": address}
        self.send(json.dumps(setup))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Json:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"channel load process exited with {self.proc.wait()}")
        result: Json = json.loads(line)
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _stop_all(loads: Sequence[_LoadProcess]) -> None:
    for load in loads:
        load.stop()


# --------------------------------------------------------------------------- one run


def open_files_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of a running process (from /proc/<pid>/limits)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open files limit for pid {pid}")


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the server started inside."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _wait_quiet(pid: int, limit: float = QUIET_LIMIT) -> float:
    """Waits until the server is idle after the connects (with NATS each connect also puts a
    presence key that every node's watch then reads: thousands of them keep it busy for
    seconds after the last socket opened); the seconds waited, at most ``limit``."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < limit and quiet < 2:
        used = cpu_seconds(pid)
        time.sleep(QUIET_SAMPLE)
        busy = (cpu_seconds(pid) - used) / QUIET_SAMPLE
        quiet = quiet + 1 if busy < QUIET_SHARE else 0
    return time.monotonic() - started


def _post_body() -> Json:
    return {
        "id": str(new_message_id()),
        "ts": int(time.time() * 1000),
        "content": base64.b64encode(encode_content("one post to everyone")).decode(),
        "signature": base64.b64encode(os.urandom(64)).decode(),
    }


async def _post(url: str, seeded: Seeded) -> tuple[float, float]:
    """Posts once over a connection already open (and a token already checked); the times
    before sending and after the answer."""
    headers = {"Authorization": f"Bearer {seeded.owner_token}"}
    async with httpx.AsyncClient(
        base_url=url, timeout=NET_TIMEOUT, headers=headers, limits=http_limits()
    ) as http:
        warm = await http.get(f"/v1/channels/{seeded.channel}")
        warm.raise_for_status()
        sent = time.monotonic()
        r = await http.post(f"/v1/channels/{seeded.channel}/posts", json=_post_body())
        accepted = time.monotonic()
    if r.status_code != 200:
        raise RuntimeError(f"post: {r.status_code} {r.text[:200]}")
    return sent, accepted


async def _catch_up(url: str, channel: str, tokens: Sequence[str]) -> tuple[list[float], int]:
    """Offline subscribers come back as the client does: Hello → Synced, the channel list,
    the newest page of the channel (no cursor yet). The seconds each took to hold the post;
    how many did not get it."""
    gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
    times: list[float] = []
    failed = [0]
    limits = http_limits(CATCH_UP_CONCURRENCY, CATCH_UP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=NET_TIMEOUT, limits=limits) as http:

        async def one(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with gate:
                t0 = time.monotonic()
                try:
                    ws, _ = await connect_device(ws_url(url), token)
                except Exception:
                    failed[0] += 1
                    return
                try:
                    mine = await http.get("/v1/channels", headers=headers)
                    r = await http.get(
                        f"/v1/channels/{channel}/posts",
                        params={"limit": FIRST_PAGE},
                        headers=headers,
                    )
                    if (
                        mine.status_code == 200
                        and [c["id"] for c in mine.json()] == [channel]
                        and r.status_code == 200
                        and [p["seq"] for p in r.json()["posts"]] == [1]
                    ):
                        times.append(time.monotonic() - t0)
                    else:
                        failed[0] += 1
                except httpx.HTTPError:
                    failed[0] += 1
                finally:
                    await ws.close()

        await asyncio.gather(*(one(t) for t in tokens))
    return times, failed[0]


def run(seeded: Seeded, online: int, nats: bool, work: Path) -> Json:
    """One post to the seeded channel, with JetStream (``nats``) or the in-process queue."""
    from tests.standins.nats_server import nats_server

    subscribers = len(seeded.tokens)
    data_dir = work / "server"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(seeded.data_dir, data_dir)
    own_limit = raise_nofile()
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    loads: list[_LoadProcess] = []
    with contextlib.ExitStack() as stack:
        nats_url = None
        if nats:
            shutil.rmtree(work / "nats", ignore_errors=True)
            nats_url = stack.enter_context(nats_server(work / "nats", free_port()))
        stack.enter_context(
            _environment(
                TIDINGS_NATS_URL=nats_url,
                TIDINGS_NATS_NODE="bench1" if nats else None,
                # the online subscribers only listen: no Ping frames to keep them
                TIDINGS_IDLE_TIMEOUT="900",
            )
        )
        server: ServerProcess = stack.enter_context(tidings_server(data_dir, port))
        stack.callback(_stop_all, loads)
        server.wait_http(f"{url}/v1/health", timeout=60)
        time.sleep(1.0)
        rss_start = rss_bytes(server.pid)
        server_limit = open_files_limit(server.pid)
        online = max(0, min(online, subscribers, server_limit - SERVER_FD_MARGIN))
        processes = max(LOAD_PROCESSES, -(-online // max(1, own_limit - LOAD_FD_MARGIN)))
        t0 = time.monotonic()
        for k in range(processes):
            tokens = seeded.tokens[k:online:processes]
            loads.append(_LoadProcess(ws_url(url), seeded.channel, tokens, f"127.0.0.{2 + k}"))
        opened = [load.answer() for load in loads]
        connect_s = time.monotonic() - t0
        connected = sum(a["open"] for a in opened)
        server.check_alive()
        settle_s = _wait_quiet(server.pid)
        rss_online = rss_bytes(server.pid)

        cpu0 = cpu_seconds(server.pid)
        sent, accepted = asyncio.run(_post(url, seeded))
        for load in loads:
            load.send(f"collect {POST_TIMEOUT}")
        answers = [load.answer() for load in loads]
        fanout_cpu = cpu_seconds(server.pid) - cpu0
        time.sleep(1.0)
        rss_after = rss_bytes(server.pid)
        lat = sorted(t - sent for a in answers for t in a["arrivals"])

        sample = seeded.tokens[online : online + CATCH_UP_SAMPLE]
        catch_up, catch_up_failed = asyncio.run(_catch_up(url, seeded.channel, sample))
        server.check_alive()

    received = len(lat)
    return {
        "queue": "nats" if nats else "embedded",
        "subscribers": subscribers,
        "online": connected,
        "online_aimed": online,
        "offline": subscribers - connected,
        "received": received,
        "missing": connected - received,
        "connect_failures": [f for a in opened for f in a["failures"]][:3],
        "accepted_ms": round((accepted - sent) * 1000, 1),
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
        "all_online_ms": round(lat[-1] * 1000, 1) if lat else None,
        "server_fanout_cpu_ms": round(fanout_cpu * 1000),
        "load_cpu_ms": round(1000 * sum(a["cpu_s"] for a in answers)),
        "load_processes": processes,
        "catch_up_sample": len(sample),
        "catch_up_failed": catch_up_failed,
        "catch_up_p50_ms": _pct(catch_up, 0.50),
        "catch_up_p99_ms": _pct(catch_up, 0.99),
        "catch_up_max_ms": round(max(catch_up) * 1000, 1) if catch_up else None,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_online_mb": round(rss_online / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "bytes_per_online": round((rss_online - rss_start) / max(1, connected)),
        "bytes_per_subscriber": round(rss_after / max(1, subscribers)),
        "post_bytes_per_subscriber": round((rss_after - rss_online) / max(1, subscribers)),
        "server_open_files_limit": server_limit,
        "setup_s": {"connect": round(connect_s, 1), "settle": round(settle_s, 1)},
    }


def part(
    subscribers: int = 50_000,
    online: int = 15_000,
    work: Path | None = None,
    modes: Sequence[bool] = (False, True),
) -> Json:
    """Seeds once, then one run per mode (False: in-process queue, True: NATS JetStream).
    ``work`` keeps the servers' logs (a temporary directory otherwise)."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidings-ch-")))
        names = ["nats" if nats else "embedded" for nats in modes]
        # the databases go, whatever happens (50,000 accounts are tens of MB); the logs stay
        stack.callback(_drop_databases, [work / "seed", *(work / n / "server" for n in names)])
        shutil.rmtree(work / "seed", ignore_errors=True)
        seeded = seed(work / "seed", subscribers)
        out: Json = {"seed_s": round(seeded.seconds, 1)}
        for nats, name in zip(modes, names, strict=True):
            out[name] = run(seeded, online, nats, work / name)
    return out


def _drop_databases(directories: Sequence[Path]) -> None:
    for directory in directories:
        for database in directory.glob("tidings.sqlite3*"):
            database.unlink()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=50_000)
    parser.add_argument("--online", type=int, default=15_000)
    parser.add_argument("--nats", action="store_true", help="only the NATS run")
    parser.add_argument("--embedded", action="store_true", help="only the in-process run")
    parser.add_argument("--work", type=Path, default=None, help="keep logs here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    install_uvloop()
    if args.worker:
        raise_nofile()
        asyncio.run(_worker())
        return
    modes = [False] if args.embedded else [True] if args.nats else [False, True]
    print(json.dumps(part(args.subscribers, args.online, args.work, modes), indent=2))


if __name__ == "__main__":
    main()
