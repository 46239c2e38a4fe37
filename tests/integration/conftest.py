"""Fixtures that run the real server as a subprocess (`python -m tidings.server`).

`server` gives a started :class:`ServerProcess` on a free loopback port with its data in a fresh
temporary directory; `server_factory(env=..., data_dir=..., start=...)` makes more of them, for
tests that need settings (e.g. ``TIDINGS_MEMBER_CAP``) or several servers. A test module may set
``SERVER_ENV`` (a mapping) for settings all of its servers share; ``env`` adds to and overrides
them. Every process is stopped when the test ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import websockets.asyncio.client
from tests.integration.store_inspection import POSTGRES_LEG, default_store
from websockets.asyncio.client import ClientConnection

from tidings.client import Client
from tidings.client.types import Message, MessageAdded, MessageStatus, MessageUpdated
from tidings.protocol import (
    Accepted,
    Batch,
    Envelope,
    Hello,
    Ping,
    Pong,
    Send,
    ServerFrame,
    Synced,
    Welcome,
    decode_server_frame,
    encode,
)

F = TypeVar("F")

#: How long a server may take to answer /v1/health after being launched.
START_TIMEOUT = 20.0
#: How long `stop()` waits after SIGTERM before it falls back to SIGKILL.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One `python -m tidings.server` subprocess bound to 127.0.0.1.

    The port and data directory are fixed at construction, so :meth:`restart` (or :meth:`start`
    after :meth:`kill`) brings the same server back with the same state. Its stdout and stderr
    go to ``data_dir / "server.log"`` (appended across restarts).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"
        self.log_path = data_dir / "server.log"
        self.env = dict(env or {})
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Launch the process and wait until GET /v1/health answers 200."""
        if self.running:
            raise RuntimeError("server already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        # Tests create many accounts from 127.0.0.1; a test may still set its own limit.
        env["TIDINGS_ACCOUNTS_PER_MINUTE"] = "1000000"
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "tidings.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self._proc.returncode} while starting:\n"
                        + self.log_text()[-4000:]
                    )
                try:
                    if http.get(f"{self.url}/v1/health").status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last_error = exc
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"server not healthy after {START_TIMEOUT}s ({last_error!r}):\n"
            + self.log_text()[-4000:]
        )

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL if it does not come)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would, and wait for the process to be gone."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop()
        self.start()

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, data_dir={str(self.data_dir)!r})"


ServerFactory = Callable[..., ServerProcess]

_failed = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The PostgreSQL leg leaves out the tests about the SQLite store itself (each names why in
    # its `sqlite_only` mark), as deselected rather than skipped: they run in the main leg.
    if not POSTGRES_LEG:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remember a failed test so its servers' logs can be shown at teardown.
    report = yield
    if report.failed:
        item.stash[_failed] = True
    return report


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    store_env: dict[str, str],
) -> Iterator[ServerFactory]:
    """Make servers: ``server_factory(env={"TIDINGS_MEMBER_CAP": "5"}, data_dir=None,
    start=True, extra_args=())``, with ``env`` on top of the test module's ``SERVER_ENV``. All of
    them are killed at the end of the test; if the test failed, the end of each server's log is
    printed."""
    made: list[ServerProcess] = []
    module_env: Mapping[str, str] = {
        **getattr(request.module, "SERVER_ENV", {}),
        **store_env,
    }

    def make(
        *,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        start: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> ServerProcess:
        directory = data_dir if data_dir is not None else tmp_path_factory.mktemp("server")
        proc = ServerProcess(directory, env={**module_env, **(env or {})}, extra_args=extra_args)
        made.append(proc)
        if start:
            proc.start()
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.kill()
            if request.node.stash.get(_failed, False):
                print(f"\n--- end of {proc.log_path} ---\n{proc.log_text()[-3000:]}")


@pytest.fixture
def store_env() -> Iterator[dict[str, str]]:
    """Settings naming the store of a test's servers: none (SQLite in data_dir), or with
    ``TIDINGS_TEST_STORE=postgres`` a fresh PostgreSQL database of the test's own, dropped after
    its servers are gone; a module may override this (``store_inspection.store_env``: SQLite
    and PostgreSQL legs)."""
    with default_store() as settings:
        yield settings


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    """A started server with default settings and an empty data directory."""
    return server_factory()


# --------------------------------------------------------------------------- protocol helpers
# Used by the server's own integration tests (test_server_*.py) through the `server_kit`
# fixture: a bare httpx + websockets client that speaks the protocol frame by frame.


@dataclasses.dataclass(frozen=True)
class TestAccount:
    account_id: str
    username: str
    device_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class WsPeer:
    """One raw WebSocket connection speaking protocol frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: msgspec.Struct) -> None:
        await self.ws.send(encode(frame))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, wait: float = 10.0) -> ServerFrame:
        data = await asyncio.wait_for(self.ws.recv(), wait)
        assert isinstance(data, bytes), f"text frame from the server: {data!r}"
        return decode_server_frame(data)

    async def expect(self, kind: type[F], wait: float = 10.0) -> F:
        """The next frame, which must be a ``kind``."""
        frame = await self.recv(wait)
        assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
        return frame

    async def until(self, kind: type[F], wait: float = 10.0) -> tuple[F, list[ServerFrame]]:
        """Skip frames until a ``kind`` comes; returns it and the skipped ones."""
        skipped: list[ServerFrame] = []
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.001))
            if isinstance(frame, kind):
                return frame, skipped
            skipped.append(frame)

    async def hello(
        self, cursors: dict[str, int] | None = None
    ) -> tuple[Welcome, list[Envelope], list[ServerFrame]]:
        """Send Hello; returns the Welcome, the replayed envelopes and other frames seen
        before Synced."""
        await self.send(Hello(cursors=cursors or {}))
        welcome = await self.expect(Welcome)
        envelopes: list[Envelope] = []
        others: list[ServerFrame] = []
        while True:
            frame = await self.recv()
            if isinstance(frame, Synced):
                return welcome, envelopes, others
            if isinstance(frame, Batch):
                envelopes.extend(frame.envelopes)
            else:
                others.append(frame)

    async def post(self, conv: str, payload: bytes = b"x", **fields: Any) -> Accepted:
        """Send a message (a fresh ``id`` unless given in ``fields``); it must be accepted."""
        fields.setdefault("id", uuid.uuid4())
        await self.send(Send(conv=conv, payload=payload, **fields))
        return await self.expect(Accepted)

    async def ping(self, n: int = 7) -> None:
        """Round trip a Ping, proving the connection still works."""
        await self.send(Ping(n=n))
        pong, _ = await self.until(Pong)
        assert pong.n == n

    async def close(self) -> None:
        await self.ws.close()


class ServerKit:
    """REST and WebSocket helpers bound to one server."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        # An idle pooled connection is reused for 2 s at most, as the product's client does:
        # the server closes idle keep-alive connections after 5 s, and a request written onto
        # one at that moment fails with a ReadError (seen under load with thousands of calls).
        self.http = httpx.AsyncClient(
            base_url=server.url, timeout=30.0, limits=httpx.Limits(keepalive_expiry=2.0)
        )
        self._peers: list[WsPeer] = []

    async def account(self, username: str, device_name: str = "primary") -> TestAccount:
        r = await self.http.post(
            "/v1/accounts", json={"username": username, "device_name": device_name}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return TestAccount(body["account_id"], body["username"], body["device_id"], body["token"])

    async def direct(self, a: TestAccount, b: TestAccount) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/conversations/direct", json={"username": b.username}, headers=a.headers
        )
        assert r.status_code in (200, 201), r.text
        conv: dict[str, Any] = r.json()
        return conv

    async def direct_pair(
        self, first: str = "alice", second: str = "bob"
    ) -> tuple[TestAccount, TestAccount, str]:
        """Two new accounts and the id of their direct conversation."""
        a, b = await self.account(first), await self.account(second)
        return a, b, (await self.direct(a, b))["id"]

    async def group(
        self, admin: TestAccount, title: str, members: list[TestAccount]
    ) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/groups",
            json={"title": title, "members": [m.username for m in members]},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
        conv: dict[str, Any] = r.json()
        return conv

    async def connect(self, account: TestAccount) -> WsPeer:
        ws = await websockets.asyncio.client.connect(
            self.server.ws_url,
            additional_headers=account.headers,
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=30,
        )
        peer = WsPeer(ws)
        self._peers.append(peer)
        return peer

    async def aclose(self) -> None:
        for peer in self._peers:
            with contextlib.suppress(Exception):
                await peer.ws.close()
        await self.http.aclose()


@pytest.fixture
async def server_kit() -> AsyncIterator[Callable[[ServerProcess], ServerKit]]:
    """``server_kit(server)`` → a :class:`ServerKit`; all are closed after the test."""
    kits: list[ServerKit] = []

    def make(server: ServerProcess) -> ServerKit:
        kit = ServerKit(server)
        kits.append(kit)
        return kit

    try:
        yield make
    finally:
        for kit in kits:
            await kit.aclose()


# --------------------------------------------------------------------------- client helpers
# Used by the delivery tests (test_delivery_*.py), which drive real :class:`Client` objects, through
# the `recorder`, `wait_until` and `full_history` fixtures.


class EventRecorder:
    """Records every MessageAdded/MessageUpdated a client emits, per message id: how often it
    was added, the statuses it went through and the newest one."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.added: Counter[uuid.UUID] = Counter()
        self.timeline: defaultdict[uuid.UUID, list[MessageStatus]] = defaultdict(list)
        self.status: dict[uuid.UUID, MessageStatus] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventRecorder:
        self._task = asyncio.create_task(self._pump())
        for _ in range(3):
            await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _pump(self) -> None:
        async for event in self.client.events():
            if isinstance(event, MessageAdded):
                self.added[event.message.id] += 1
            elif not isinstance(event, MessageUpdated):
                continue
            self.timeline[event.message.id].append(event.message.status)
            self.status[event.message.id] = event.message.status


async def poll_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.1
) -> None:
    """Poll ``check`` every ``every`` seconds; fail after ``within`` seconds, naming ``what``."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


async def _full_history(client: Client, conv_id: str, page_size: int = 200) -> list[Message]:
    """The client's whole stored history of the conversation, oldest first."""
    messages: list[Message] = []
    before: int | None = None
    while True:
        page = await client.history(conv_id, before=before, limit=page_size)
        messages[:0] = page.messages
        if page.before is None:
            return messages
        before = page.before


@pytest.fixture
def recorder() -> type[EventRecorder]:
    """``async with recorder(client) as events:`` records the client's message events."""
    return EventRecorder


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(check, within, what, every=0.1)``."""
    return poll_until


@pytest.fixture
def full_history() -> Callable[..., Awaitable[list[Message]]]:
    """``await full_history(client, conv_id, page_size=200)``."""
    return _full_history
