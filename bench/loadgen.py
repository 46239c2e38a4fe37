"""The load generator of every Tidings benchmark, and the helpers they share.

It speaks the Tidings wire protocol directly (raw ``websockets`` + msgspec frames, never the
client core) from its own processes: ``python -m bench.loadgen --worker`` reads a
:class:`LoadSpec` on stdin, connects every sender/receiver pair, prints ``ready``, waits for
``go``, drives the pairs for the warm-up plus the measured interval and prints a
:class:`LoadResult`. :func:`run_load` starts several such workers and merges their results.

The same code drives the ceiling relay (``mode="relay"``): it sends the same ``Send`` frames,
the relay forwards them untouched to the paired receiver and answers the sender with a small
fixed ack. A message is *in flight* from the moment its frame is written until the sender has
its ack AND the receiver has it; each pair keeps ``window`` messages in flight. Latency is
send → delivery (the receiver decoded the frame).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tidings.protocol import frames as fr

Mode = Literal["relay", "tidings", "xmpp"]

BENCH_DIR = Path(__file__).resolve().parent
#: Installs and data the benchmarks keep between runs (gitignored).
CACHE_DIR = BENCH_DIR / ".peers"
LOOPBACK = "127.0.0.1"
#: The relay's ack; the load generator only counts it.
RELAY_ACK = msgspec.msgpack.encode({"t": "ok"})
#: Every wait on the network is bounded by this (seconds) unless a caller says otherwise.
NET_TIMEOUT = 60.0
#: Seconds an idle pooled HTTP connection may still be reused: less than the server's keep-alive
#: timeout (uvicorn's 5 s). httpx's default is 5 s too, so a request could leave on a connection
#: the server was closing at that moment; the server's kernel answers it with a reset
#: (``httpx.ReadError``). Under load a pool leaves its last connections idle that long: the
#: channel benchmark's 50,000 REST subscriptions died of it.
KEEPALIVE_EXPIRY = 2.0


# --------------------------------------------------------------------------- latency histogram

_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)


class Histogram:
    """Latencies (seconds) in logarithmic buckets 1% wide; mergeable across processes."""

    def __init__(self, buckets: dict[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = dict(buckets or {})

    def record(self, seconds: float) -> None:
        index = math.floor(math.log(max(seconds, 1e-7)) / _LOG_GROWTH)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: Histogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in seconds, or None without samples."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(total * q / 100))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return float(_GROWTH ** (index + 0.5))
        return float(_GROWTH ** (max(self.buckets) + 0.5))

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.buckets.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Histogram:
        return cls({int(k): v for k, v in data.items()})


def http_limits(connections: int = 100, keepalive: int = 20) -> httpx.Limits:
    """httpx's pool limits (its defaults) with :data:`KEEPALIVE_EXPIRY`."""
    return httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=keepalive,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# --------------------------------------------------------------------------- processes


def raise_nofile(target: int = 1_048_576) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (target, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[11..14] are utime, stime, cutime, cstime (fields 14-17 of proc(5))
    return sum(int(x) for x in fields[11:15]) / _TICKS


class ServerProcess:
    """A server (ours, the relay or a peer) run as a child process bound to loopback.

    The child inherits a raised RLIMIT_NOFILE. :meth:`stop` sends SIGTERM, then SIGKILL after
    ``grace`` seconds; the context manager always stops it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=raise_nofile,
            )
        return self

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers (any status below 500)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer {url} within {timeout:.0f} s")

    def wait_tcp(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not listen on {port} within {timeout:.0f} s")

    def stop(self, grace: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Per-device ciphertext of a 1:1 message (a SignalMessage around a 100-byte text padded to
#: 160 bytes: version, ratchet key, counters, AES-CBC body, MAC).
E2EE_DEVICE_CIPHERTEXT_BYTES = 226
#: A group message's shared ciphertext (a SenderKeyMessage around the same padded text:
#: distribution id, chain id, iteration, AES-CBC body, XEdDSA signature).
E2EE_GROUP_CIPHERTEXT_BYTES = 270

#: Limits lifted for the load: the workloads send thousands of messages per second from one
#: account, far above what a person can (server/config.py send_rate_*, send_burst_*), and
#: one account fills the 1,000-member group (group_adds_*).
_UNLIMITED_SENDS = {
    "TIDINGS_SEND_RATE_DEVICE": "1000000000",
    "TIDINGS_SEND_BURST_DEVICE": "1000000000",
    "TIDINGS_SEND_RATE_ACCOUNT": "1000000000",
    "TIDINGS_SEND_BURST_ACCOUNT": "1000000000",
    "TIDINGS_SEND_BYTES_PER_SECOND": str(1 << 40),
    "TIDINGS_SEND_BURST_BYTES": str(1 << 40),
    # the fan-out group is made by one admin adding 999 accounts
    "TIDINGS_GROUP_ADDS_PER_MINUTE": "1000000",
    "TIDINGS_GROUP_ADDS_PER_TARGET_PER_MINUTE": "1000000",
}


def tidings_server(
    data_dir: Path, port: int, synchronous: str | None = None, *, require_e2ee: bool = True
) -> ServerProcess:
    """The Tidings server as ``make run`` starts it, on loopback, with its own data dir;
    ``synchronous`` sets ``sqlite_synchronous`` ("full", the default, or "normal").
    ``require_e2ee`` False lets plaintext-shaped Sends in (the reference row only: users'
    servers refuse them)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TIDINGS_LOG_LEVEL="warning")
    if synchronous is not None:
        env["TIDINGS_SQLITE_SYNCHRONOUS"] = synchronous
    env.setdefault("TIDINGS_REQUIRE_E2EE", "true" if require_e2ee else "false")
    env.setdefault("TIDINGS_ACCOUNTS_PER_MINUTE", "10000000")
    for name, value in _UNLIMITED_SENDS.items():
        env.setdefault(name, value)
    argv = [sys.executable, "-m", "tidings.server", "--host", LOOPBACK, "--port", str(port)]
    argv += ["--data", str(data_dir)]
    return ServerProcess("tidings", argv, data_dir / "server.log", env=env)


# --------------------------------------------------------------------------- REST set-up


@dataclass(frozen=True)
class Account:
    username: str
    account_id: str
    token: str
    device_id: int = 1

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def address(self) -> str:
        """The device as frames name it (``account:device``)."""
        return f"{self.account_id}:{self.device_id}"


async def create_accounts(
    base_url: str, usernames: Sequence[str], concurrency: int = 32, strict: bool = True
) -> list[Account]:
    """Create accounts through ``POST /v1/accounts``, ``concurrency`` requests at a time.

    A request that fails in transport (a keep-alive connection the server just closed) is
    retried up to 3 times. If a retry finds the name taken (the lost answer had created it), a
    ``strict`` call raises; otherwise that account is left out of the result."""
    results: list[Account | None] = [None] * len(usernames)
    queue: deque[int] = deque(range(len(usernames)))
    limits = http_limits(concurrency, concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=NET_TIMEOUT, limits=limits) as http:

        async def create(name: str) -> Account | None:
            for attempt in range(4):
                try:
                    response = await http.post("/v1/accounts", json={"username": name})
                except httpx.TransportError:
                    if attempt == 3:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if response.status_code == 201:
                    body = response.json()
                    return Account(
                        body["username"], body["account_id"], body["token"], body["device_id"]
                    )
                if response.status_code == 409 and attempt > 0 and not strict:
                    return None
                raise RuntimeError(
                    f"POST /v1/accounts {name}: {response.status_code} {response.text[:200]}"
                )
            return None

        async def worker() -> None:
            while queue:
                i = queue.popleft()
                results[i] = await create(usernames[i])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    made = [a for a in results if a is not None]
    if strict and len(made) != len(usernames):
        raise RuntimeError(f"created {len(made)} of {len(usernames)} accounts")
    return made


def _key_upload() -> bytes:
    """A minimal valid key set for one load device: sizes and type bytes are what the server
    checks (it never verifies signatures: clients do). Random bytes; nobody decrypts."""
    from tidings.protocol import keys

    def curve() -> bytes:
        return b"\x05" + os.urandom(32)

    upload = keys.KeyUpload(
        identity_key=curve(),
        registration_id=1 + int.from_bytes(os.urandom(2), "big") % 16380,
        signed_prekey=keys.SignedPreKey(id=1, key=curve(), signature=os.urandom(64)),
        kyber_last_resort=keys.KyberPreKey(
            id=1, key=b"\x08" + os.urandom(1568), signature=os.urandom(64)
        ),
    )
    return msgspec.json.encode(upload)


async def upload_keys(base_url: str, accounts: Sequence[Account], concurrency: int = 32) -> None:
    """``PUT /v1/keys`` for each account's device, so that it may send and receive
    end-to-end-encrypted-shaped messages (a device without keys is on no device list)."""
    queue: deque[Account] = deque(accounts)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=NET_TIMEOUT, limits=http_limits()
    ) as http:

        async def worker() -> None:
            while queue:
                account = queue.popleft()
                headers = {**account.auth(), "Content-Type": "application/json"}
                response = await http.put("/v1/keys", content=_key_upload(), headers=headers)
                if response.status_code >= 400:
                    raise RuntimeError(
                        f"PUT /v1/keys: {response.status_code} {response.text[:200]}"
                    )

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_directs(
    base_url: str, pairs: Sequence[tuple[Account, Account]], concurrency: int = 32
) -> list[str]:
    """``POST /v1/conversations/direct`` for each (sender, receiver); the conversation ids."""
    convs: list[str] = [""] * len(pairs)
    queue: deque[int] = deque(range(len(pairs)))
    async with httpx.AsyncClient(
        base_url=base_url, timeout=NET_TIMEOUT, limits=http_limits()
    ) as http:

        async def worker() -> None:
            while queue:
                i = queue.popleft()
                sender, receiver = pairs[i]
                response = await http.post(
                    "/v1/conversations/direct",
                    json={"username": receiver.username},
                    headers=sender.auth(),
                )
                response.raise_for_status()
                convs[i] = response.json()["id"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return convs


async def create_group(
    base_url: str, admin: Account, members: Sequence[Account], chunk: int = 200
) -> str:
    """A group of ``admin`` + ``members`` (added ``chunk`` at a time); its conversation id."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=NET_TIMEOUT, limits=http_limits()
    ) as http:
        response = await http.post("/v1/groups", json={"title": "bench"}, headers=admin.auth())
        response.raise_for_status()
        conv = str(response.json()["id"])
        for start in range(0, len(members), chunk):
            names = [m.username for m in members[start : start + chunk]]
            response = await http.post(
                f"/v1/groups/{conv}/members", json={"usernames": names}, headers=admin.auth()
            )
            if response.status_code >= 400:
                raise RuntimeError(f"add members: {response.status_code} {response.text[:200]}")
    return conv


def ws_url(base_http_url: str) -> str:
    return base_http_url.replace("http://", "ws://", 1) + "/v1/ws"


# --------------------------------------------------------------------------- devices


async def connect_device(
    url: str,
    token: str | None,
    *,
    local_addr: tuple[str, int] | None = None,
    ping_interval: float | None = None,
    hello: bool = True,
) -> tuple[ClientConnection, dict[str, int]]:
    """Open one WebSocket (compression off, like the client runtime) and, for Tidings, do
    Hello → Welcome → Batch… → Synced and ack what the replay held. Returns the socket and the
    highest seq stored per conversation."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await connect(
        url,
        additional_headers=headers,
        compression=None,
        proxy=None,
        user_agent_header=None,
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
        max_size=fr.MAX_FRAME_BYTES,
        max_queue=256,
        open_timeout=NET_TIMEOUT,
        close_timeout=2,
        local_addr=local_addr,
    )
    stored: dict[str, int] = {}
    if not hello:
        return ws, stored
    async with asyncio.timeout(NET_TIMEOUT):
        await ws.send(fr.encode(fr.Hello()))
        while True:
            frame = fr.decode_server_frame(await ws.recv(decode=False))
            if isinstance(frame, fr.Synced):
                break
            if isinstance(frame, fr.Batch):
                for env in frame.envelopes:
                    stored[env.conv] = max(stored.get(env.conv, 0), env.seq)
            elif isinstance(frame, fr.Envelope):
                stored[frame.conv] = max(stored.get(frame.conv, 0), frame.seq)
            elif isinstance(frame, fr.Error):
                raise RuntimeError(f"server error during sync: {frame.code} {frame.message}")
        acked = {conv: seq for conv, seq in stored.items() if seq > 0}
        if acked:
            await ws.send(fr.encode(fr.Ack(upto=acked)))
    return ws, stored


# --------------------------------------------------------------------------- the 1:1 workload


class PairSpec(msgspec.Struct, frozen=True):
    """One sender/receiver pair: tokens and the direct conversation (relay: the pair number;
    XMPP: the receiver's JID, with the JIDs as tokens)."""

    conv: str
    sender_token: str = ""
    receiver_token: str = ""
    #: Tidings, end-to-end-encrypted shape: the receiver's device address; Sends then carry
    #: ``device_payloads`` for it (random ciphertext) and no shared payload, as the client's.
    #: Empty: the plaintext shape (one shared payload), which only require_e2ee = false takes.
    receiver_device: str = ""


class LoadSpec(msgspec.Struct, frozen=True):
    mode: Mode
    #: ws://… of the server (Tidings: …/v1/ws; relay: its root)
    url: str
    pairs: list[PairSpec]
    window: int
    warmup: float
    duration: float
    payload_bytes: int = 100


class LoadResult(msgspec.Struct):
    #: messages completed (acked and delivered) inside the measured interval
    completed: int
    measured_seconds: float
    latency: dict[str, int]
    #: CPU seconds this load process used during the measured interval
    cpu_seconds: float
    connect_seconds: float
    errors: list[str]


class _Flight:
    __slots__ = ("acked", "delivered_at", "sent_at")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.acked = False
        self.delivered_at: float | None = None


class _Meter:
    """Counts completions and latencies inside [measure_from, stop_at)."""

    def __init__(self) -> None:
        self.measure_from = math.inf
        self.stop_at = math.inf
        self.completed = 0
        self.latency = Histogram()
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


class _PairDriver:
    """Drives one sender socket and one receiver socket of the same conversation."""

    def __init__(
        self,
        spec: LoadSpec,
        pair: PairSpec,
        sender: ClientConnection,
        receiver: ClientConnection,
        meter: _Meter,
    ) -> None:
        self.relay = spec.mode == "relay"
        self.conv = pair.conv
        self.payload = os.urandom(spec.payload_bytes)
        #: E2EE-shaped: a fresh ciphertext per message would only cost the load generator;
        #: the server sees bytes of the right size either way.
        self.device_payloads = (
            {pair.receiver_device: os.urandom(E2EE_DEVICE_CIPHERTEXT_BYTES)}
            if pair.receiver_device
            else None
        )
        self.sender = sender
        self.receiver = receiver
        self.meter = meter
        self.window = asyncio.Semaphore(spec.window)
        self.inflight: dict[uuid.UUID, _Flight] = {}
        self.unacked: deque[uuid.UUID] = deque()
        self.highest_seq = 0
        self.acked_seq = 0
        self.ack_due = asyncio.Event()
        self.drained = asyncio.Event()

    def _settle(self, mid: uuid.UUID, flight: _Flight) -> None:
        del self.inflight[mid]
        self.window.release()
        now = time.monotonic()
        meter = self.meter
        if meter.measure_from <= now < meter.stop_at:
            meter.completed += 1
            meter.latency.record((flight.delivered_at or now) - flight.sent_at)
        if not self.inflight and now >= meter.stop_at:
            self.drained.set()

    async def send_loop(self) -> None:
        # Imported here: the XMPP peer's load worker imports this module without the client.
        from tidings.client.ids import new_message_id

        encode = fr.encode
        send_frame = fr.Send
        window = self.window
        while True:
            await window.acquire()
            now = time.monotonic()
            if now >= self.meter.stop_at:
                window.release()
                if not self.inflight:
                    self.drained.set()
                return
            mid = new_message_id()
            self.inflight[mid] = _Flight(now)
            if self.relay:
                self.unacked.append(mid)
            if self.device_payloads is None:
                frame = send_frame(id=mid, conv=self.conv, payload=self.payload)
            else:
                frame = send_frame(
                    id=mid, conv=self.conv, payload=b"", device_payloads=self.device_payloads
                )
            await self.sender.send(encode(frame))

    async def sender_reader(self) -> None:
        decode = fr.decode_server_frame
        recv = self.sender.recv
        while True:
            data = await recv(decode=False)
            if self.relay:
                mid = self.unacked.popleft()
            else:
                frame = decode(data)
                if isinstance(frame, fr.Accepted):
                    mid = frame.id
                elif isinstance(frame, fr.Rejected | fr.Error):
                    self.meter.error(repr(frame))
                    continue
                else:
                    continue
            flight = self.inflight.get(mid)
            if flight is None:
                continue
            flight.acked = True
            if flight.delivered_at is not None:
                self._settle(mid, flight)

    async def receiver_reader(self) -> None:
        decode = fr.decode_server_frame
        decode_send = _send_decoder.decode
        recv = self.receiver.recv
        while True:
            data = await recv(decode=False)
            now = time.monotonic()
            if self.relay:
                mid = decode_send(data).id
                self._delivered(mid, now)
                continue
            frame = decode(data)
            if isinstance(frame, fr.Envelope):
                envelopes = [frame]
            elif isinstance(frame, fr.Batch):
                envelopes = frame.envelopes
            else:
                if isinstance(frame, fr.Error):
                    self.meter.error(repr(frame))
                continue
            for env in envelopes:
                if env.seq > self.highest_seq:
                    self.highest_seq = env.seq
                    self.ack_due.set()
                self._delivered(env.id, now)

    def _delivered(self, mid: uuid.UUID, now: float) -> None:
        flight = self.inflight.get(mid)
        if flight is None:
            return
        flight.delivered_at = now
        if flight.acked:
            self._settle(mid, flight)

    async def ack_loop(self) -> None:
        """One Ack per burst of envelopes: the receive loop sets ``ack_due`` for each one and
        this task runs only when the loop yields, like a client that persists a batch."""
        while True:
            await self.ack_due.wait()
            self.ack_due.clear()
            if self.highest_seq > self.acked_seq:
                self.acked_seq = self.highest_seq
                await self.receiver.send(fr.encode(fr.Ack(upto={self.conv: self.acked_seq})))


_send_decoder = msgspec.msgpack.Decoder(fr.Send)


def _pair_url(spec: LoadSpec, pair: PairSpec, role: str) -> str:
    return f"{spec.url}/{role}/{pair.conv}" if spec.mode == "relay" else spec.url


async def _connect_pair(spec: LoadSpec, pair: PairSpec) -> tuple[ClientConnection, ...]:
    hello = spec.mode == "tidings"
    receiver, _ = await connect_device(
        _pair_url(spec, pair, "recv"), pair.receiver_token or None, hello=hello
    )
    sender, _ = await connect_device(
        _pair_url(spec, pair, "send"), pair.sender_token or None, hello=hello
    )
    return sender, receiver


async def drive_pairs(
    spec: LoadSpec, go: Callable[[], Awaitable[float]] | None = None
) -> LoadResult:
    """Connect every pair of ``spec``, await ``go()`` (a monotonic start time; now if None),
    run warm-up + measured interval, then let in-flight messages drain (bounded)."""
    meter = _Meter()
    t0 = time.monotonic()
    sockets: list[tuple[ClientConnection, ...]] = []
    for start in range(0, len(spec.pairs), 50):
        sockets += await asyncio.gather(
            *(_connect_pair(spec, p) for p in spec.pairs[start : start + 50])
        )
    connect_seconds = time.monotonic() - t0
    drivers = [
        _PairDriver(spec, pair, sender, receiver, meter)
        for pair, (sender, receiver) in zip(spec.pairs, sockets, strict=True)
    ]
    start_at = await go() if go is not None else time.monotonic()
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    meter.measure_from = start_at + spec.warmup
    meter.stop_at = meter.measure_from + spec.duration
    readers = [asyncio.ensure_future(d.sender_reader()) for d in drivers]
    readers += [asyncio.ensure_future(d.receiver_reader()) for d in drivers]
    readers += [asyncio.ensure_future(d.ack_loop()) for d in drivers if spec.mode == "tidings"]
    senders = [asyncio.ensure_future(d.send_loop()) for d in drivers]
    await asyncio.sleep(max(0.0, meter.measure_from - time.monotonic()))
    cpu_start = time.process_time()
    await asyncio.sleep(max(0.0, meter.stop_at - time.monotonic()))
    cpu = time.process_time() - cpu_start
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await asyncio.gather(*senders)
            await asyncio.gather(*(d.drained.wait() for d in drivers))
    for d in drivers:
        if d.inflight:
            meter.error(f"pair {d.conv}: {len(d.inflight)} messages never completed")
            break
    for task in senders + readers:
        task.cancel()
    for sender, receiver in sockets:
        await sender.close()
        await receiver.close()
    await asyncio.gather(*senders, *readers, return_exceptions=True)
    return LoadResult(
        completed=meter.completed,
        measured_seconds=spec.duration,
        latency=meter.latency.to_json(),
        cpu_seconds=cpu,
        connect_seconds=connect_seconds,
        errors=meter.errors,
    )


# --------------------------------------------------------------------------- group fan-out


class FanoutSpec(msgspec.Struct, frozen=True):
    url: str
    conv: str
    sender_token: str
    member_tokens: list[str]
    posts: int
    payload_bytes: int = 100
    #: longest wait for one post to reach every member (seconds)
    post_timeout: float = 15.0
    #: quiet time between posts, after every member's delivery receipt for the last one came
    #: back (or ``post_timeout`` passed), so the ack/receipt storm of one post is not timed
    #: in the next
    pause: float = 0.1
    #: E2EE shape: the group's device-list digest (tidings.protocol.digest) the posts carry,
    #: with a Sender Key-sized random payload; empty: plaintext posts of ``payload_bytes``
    devices_digest: bytes = b""


class FanoutResult(msgspec.Struct):
    #: send → last member has it, per post (seconds); a post that timed out is left out
    times: list[float]
    #: send → the sender holds every member's delivery receipt, per post (seconds)
    receipt_times: list[float]
    recipients: int
    connect_seconds: float
    #: CPU seconds this load process spent while posts were in flight
    cpu_seconds: float
    errors: list[str]
    #: CPU seconds the server spent from the first post to the last receipt (set by the
    #: parent, which knows the server's pid)
    server_cpu_seconds: float | None = None


async def drive_fanout(
    spec: FanoutSpec, on_connected: Callable[[], None] | None = None
) -> FanoutResult:
    """Every member online from this process; the sender posts ``posts`` times, one after the
    other, and each post is timed until the last member has decoded it."""
    from tidings.client.ids import new_message_id  # as in send_loop: not for the XMPP worker

    errors: list[str] = []
    t0 = time.monotonic()
    members: list[ClientConnection] = []
    for start in range(0, len(spec.member_tokens), 100):
        opened = await asyncio.gather(
            *(connect_device(spec.url, t) for t in spec.member_tokens[start : start + 100])
        )
        members += [ws for ws, _ in opened]
    sender, _ = await connect_device(spec.url, spec.sender_token)
    connect_seconds = time.monotonic() - t0
    if on_connected is not None:
        on_connected()
    current: list[uuid.UUID | None] = [None]
    remaining = [0]
    done = asyncio.Event()
    last_arrival = [0.0]

    closed: list[str] = []

    async def member_reader(ws: ClientConnection) -> None:
        decode = fr.decode_server_frame
        while True:
            try:
                data = await ws.recv(decode=False)
            except ConnectionClosed as exc:
                closed.append(f"a member's connection closed: {exc}")
                return
            frame = decode(data)
            if isinstance(frame, fr.Envelope) and frame.conv == spec.conv:
                if frame.id == current[0]:
                    last_arrival[0] = time.monotonic()
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
                await ws.send(fr.encode(fr.Ack(upto={spec.conv: frame.seq})))
            elif isinstance(frame, fr.Error) and len(errors) < 10:
                errors.append(repr(frame))

    seq = [0]
    receipted: set[str] = set()
    all_receipts = asyncio.Event()
    receipt_at = [0.0]

    async def sender_reader() -> None:
        while True:
            frame = fr.decode_server_frame(await sender.recv(decode=False))
            if isinstance(frame, fr.Accepted) and frame.id == current[0]:
                seq[0] = frame.seq
            elif isinstance(frame, fr.Receipt) and seq[0] and frame.delivered >= seq[0]:
                receipted.add(frame.account)
                if len(receipted) >= len(members):
                    receipt_at[0] = time.monotonic()
                    all_receipts.set()
            elif isinstance(frame, fr.Rejected | fr.Error) and len(errors) < 10:
                errors.append(repr(frame))

    tasks = [asyncio.ensure_future(member_reader(ws)) for ws in members]
    tasks.append(asyncio.ensure_future(sender_reader()))
    payload = os.urandom(E2EE_GROUP_CIPHERTEXT_BYTES if spec.devices_digest else spec.payload_bytes)
    times: list[float] = []
    receipt_times: list[float] = []
    receipt_misses = post_misses = 0
    cpu = 0.0
    for _ in range(spec.posts):
        mid = new_message_id()
        current[0] = mid
        remaining[0] = len(members)
        done.clear()
        seq[0] = 0
        receipted.clear()
        all_receipts.clear()
        cpu_start = time.process_time()
        sent_at = time.monotonic()
        post = fr.Send(id=mid, conv=spec.conv, payload=payload, devices_digest=spec.devices_digest)
        await sender.send(fr.encode(post))
        try:
            async with asyncio.timeout(spec.post_timeout):
                await done.wait()
            times.append(last_arrival[0] - sent_at)
        except TimeoutError:
            errors.append(f"post reached {len(members) - remaining[0]}/{len(members)} members")
            post_misses += 1
            if closed or post_misses >= 3:  # no later post can do better: stop early
                errors += closed[:3]
                break
        cpu += time.process_time() - cpu_start
        if receipt_misses < 2:  # after two misses, stop waiting for receipts
            try:
                async with asyncio.timeout(min(spec.post_timeout, 5.0)):
                    await all_receipts.wait()
                receipt_times.append(receipt_at[0] - sent_at)
            except TimeoutError:
                receipt_misses += 1
                errors.append(f"receipts from {len(receipted)}/{len(members)} members")
        await asyncio.sleep(spec.pause)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ws in [sender, *members]:
        await ws.close()
    return FanoutResult(times, receipt_times, len(members), connect_seconds, cpu, errors[:10])


def run_fanout(
    spec: FanoutSpec, server_pid: int | None = None, profile_to: Path | None = None
) -> FanoutResult:
    """:func:`drive_fanout` in its own load process; with ``profile_to``, py-spy samples the
    server while the posts go out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "--fanout"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=BENCH_DIR.parent,
        preexec_fn=raise_nofile,
    )
    profiler: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stdin is not None
        proc.stdin.write(msgspec.json.encode(spec).decode())
        proc.stdin.close()
        line = _readline(proc, NET_TIMEOUT * 3)
        if line.strip() != "connected":
            raise RuntimeError(f"fan-out worker: {line[:300]!r}")
        cpu0 = cpu_seconds(server_pid) if server_pid is not None else 0.0
        if profile_to is not None and server_pid is not None:
            profiler = start_profiler(server_pid, spec.posts * 0.5, profile_to)
        line = _readline(proc, spec.posts * (2 * spec.post_timeout + spec.pause) + 60)
        result = msgspec.json.decode(line, type=FanoutResult)
        if server_pid is not None:
            result.server_cpu_seconds = cpu_seconds(server_pid) - cpu0
        if profiler is not None:
            profiler.wait(60)
        return result
    except RuntimeError as exc:
        stderr = proc.stderr.read()[-1500:] if proc.stderr and proc.poll() is not None else ""
        raise RuntimeError(f"{exc}\n{stderr}") from exc
    finally:
        for child in (proc, profiler):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()


# --------------------------------------------------------------------------- worker processes


async def _worker_main() -> None:
    loop = asyncio.get_running_loop()
    spec = msgspec.json.decode(sys.stdin.buffer.readline(), type=LoadSpec)

    async def ready_then_go() -> float:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        return float(line.split()[1])

    result = await drive_pairs(spec, ready_then_go)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    sys.stdout.flush()


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@dataclass
class LoadReport:
    """Merged outcome of :func:`run_load`."""

    msgs_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    completed: int
    pairs: int
    window: int
    processes: int
    #: CPU use of each load process during the measured interval, % of one core
    loadgen_cpu_pct: list[float]
    #: CPU use of the server during the measured interval, % of one core
    server_cpu_pct: float | None
    errors: list[str]

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _split(items: Sequence[PairSpec], parts: int) -> Iterator[list[PairSpec]]:
    for i in range(parts):
        chunk = list(items[i::parts])
        if chunk:
            yield chunk


def run_load(
    mode: Mode,
    url: str,
    pairs: Sequence[PairSpec],
    window: int,
    warmup: float,
    duration: float,
    processes: int = 1,
    server_pid: int | None = None,
    profile_to: Path | None = None,
    worker_argv: Sequence[str] = (sys.executable, "-m", "bench.loadgen", "--worker"),
    worker_env: dict[str, str] | None = None,
) -> LoadReport:
    """Run the 1:1 workload from ``processes`` worker processes and merge what they measured.
    ``worker_argv`` may name another worker speaking the same stdin/stdout protocol (the XMPP
    driver of the Prosody peer)."""
    workers: list[subprocess.Popen[str]] = []
    specs = [
        LoadSpec(mode, url, chunk, window, warmup, duration)
        for chunk in _split(pairs, max(1, processes))
    ]
    profiler: subprocess.Popen[bytes] | None = None
    try:
        for spec in specs:
            proc = subprocess.Popen(
                list(worker_argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=BENCH_DIR.parent,
                env=worker_env,
                preexec_fn=raise_nofile,
            )
            assert proc.stdin is not None
            proc.stdin.write(msgspec.json.encode(spec).decode() + "\n")
            proc.stdin.flush()
            workers.append(proc)
        for proc in workers:
            assert proc.stdout is not None
            line = _readline(proc, NET_TIMEOUT + 30)
            if line.strip() != "ready":
                raise RuntimeError(f"load worker failed to connect: {line[:300]!r}")
        start_at = time.monotonic() + 0.2
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(f"go {start_at}\n")
            proc.stdin.flush()
        server_cpu: float | None = None
        if server_pid is not None:
            time.sleep(max(0.0, start_at + warmup - time.monotonic()))
            before = cpu_seconds(server_pid)
            if profile_to is not None:
                profiler = start_profiler(server_pid, duration, profile_to)
            time.sleep(duration)
            server_cpu = round(100 * (cpu_seconds(server_pid) - before) / duration, 1)
        results = []
        for proc in workers:
            line = _readline(proc, warmup + duration + 60)
            results.append(msgspec.json.decode(line, type=LoadResult))
        if profiler is not None:
            profiler.wait(30)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait()
    hist = Histogram()
    for r in results:
        hist.merge(Histogram.from_json(r.latency))
    completed = sum(r.completed for r in results)
    return LoadReport(
        msgs_per_s=round(completed / duration, 1),
        p50_ms=ms(hist.percentile(50)),
        p99_ms=ms(hist.percentile(99)),
        completed=completed,
        pairs=len(pairs),
        window=window,
        processes=len(specs),
        loadgen_cpu_pct=[round(100 * r.cpu_seconds / duration, 1) for r in results],
        server_cpu_pct=server_cpu,
        errors=[e for r in results for e in r.errors][:10],
    )


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a worker's stdout, or an error once ``timeout`` passed or it exited."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"load worker silent for {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"load worker exited with {proc.wait()}")
    return line


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (if installed) sampling ``pid`` for ``seconds`` into collapsed stacks at ``out``."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(exe), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    argv += ["--format", "raw", "--rate", "200", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="1:1 load worker (spec on stdin)")
    parser.add_argument("--fanout", action="store_true", help="fan-out worker (spec on stdin)")
    args = parser.parse_args(argv)
    raise_nofile()
    install_uvloop()
    if args.worker:
        asyncio.run(_worker_main())
    elif args.fanout:
        spec = msgspec.json.decode(sys.stdin.buffer.read(), type=FanoutSpec)

        def connected() -> None:
            sys.stdout.write("connected\n")
            sys.stdout.flush()

        result = asyncio.run(drive_fanout(spec, connected))
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        parser.error("this is the load process; run a benchmark with python -m bench.run")


if __name__ == "__main__":
    main()
