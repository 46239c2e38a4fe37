"""What the server and the other party see when the app pauses and Android freezes it.

Kivy 2.3.1's ``on_pause`` is followed by SDL blocking the main thread (and the asyncio loop in
it). Here alice's client runs on a loop in a thread of its own; "pausing" runs on that loop
what the app's ``on_pause`` would, then blocks the thread, as SDL does: either

* ``spawned``: ``on_pause`` starts ``client.background()`` as a task, which gets one loop step
  before the freeze (what the app did before), or
* ``suspended``: ``on_pause`` calls ``client.suspend()`` (client/lifecycle.py) synchronously.

Bob's message m1 arrives just before the pause (alice's Ack is still in its batching delay),
m2 right after the freeze. Measured: alice's WebSocket as the server counts it, its pending
envelopes (/metrics), pushes (the log provider's lines), bob's ticks, and whether the push
service can sync the profile meanwhile. The server runs with idle_timeout 6 s (60 s by
default) so that the spawned case ends in time; docs/android.md has the figures.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tests.integration.conftest import server, server_factory, store_env  # noqa: F401

from tidings.client import Client
from tidings.client.types import MessageAdded, MessageStatus

SERVER_ENV = {"TIDINGS_IDLE_TIMEOUT": "6"}
#: the push service, in a process of its own (as p4a runs it)
SERVICE = """
import asyncio, json, sys
from pathlib import Path
from tidings.client import Client
from tidings.client.errors import ProfileInUse

async def main() -> None:
    try:
        client = await Client.open(Path(sys.argv[1]))
    except ProfileInUse:
        print(json.dumps("profile in use"))
        return
    result = await client.sync_once(budget=10)
    await client.close()
    print(json.dumps([m.body for m in result.notify]))

asyncio.run(main())
"""
T = TypeVar("T")


class Frozen:
    """A client on a loop in its own thread, which can be blocked as SDL blocks it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.thaw = threading.Event()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def on_pause(
        self, client: Client, body: str, pause: Callable[[], None], steps: int
    ) -> Future[None]:
        """When ``client`` has stored the message ``body``, run ``pause`` on the loop (its
        Ack is still waiting), let ``steps`` loop steps pass, then block the loop. Resolves
        once frozen."""
        done: Future[None] = Future()
        events = client.events()

        def freeze(left: int) -> None:
            if left:
                self.loop.call_soon(freeze, left - 1)
                return
            done.set_result(None)
            self.thaw.wait()

        async def watch() -> None:
            async for event in events:
                if isinstance(event, MessageAdded) and event.message.body == body:
                    pause()
                    freeze(steps)
                    return

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(watch()) and None)
        return done

    def stop(self) -> None:
        self.thaw.set()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _metrics(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    found = re.findall(r"^(tidings_websocket_connections|tidings_pending_envelopes) (\S+)$",
                       text, re.M)  # fmt: skip
    return {name: float(value) for name, value in found}


async def _status(client: Client, message_id: Any) -> MessageStatus:
    message = await client.message(message_id)
    assert message is not None
    return message.status


async def _scenario(srv: Any, tmp_path: Path, how: str) -> dict[str, Any]:
    server = srv  # noqa: F811
    bob = await Client.create_account(tmp_path / "bob", server.url, "bob")
    await bob.start()
    await bob.wait_synced(30)
    app = Frozen()
    alice_profile = tmp_path / "alice"

    async def make_alice() -> Client:
        client = await Client.create_account(alice_profile, server.url, "alice")
        await client.register_push("log", "alice-push-token")
        await client.start()
        await client.wait_synced(30)
        return client

    alice: Client = app.run(make_alice())
    figures: dict[str, Any] = {"how": how}
    try:
        chat = await bob.open_direct("alice")
        m0 = await bob.send_text(chat.id, "hello")
        while await _status(bob, m0.id) is not MessageStatus.DELIVERED:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        pushes_before = server.log_text().count("push (log)")
        if how == "spawned":
            frozen = app.on_pause(
                alice, "m1", lambda: app.loop.create_task(alice.background()) and None, 1
            )
        else:
            frozen = app.on_pause(alice, "m1", lambda: alice.suspend() and None, 0)
        m1 = await bob.send_text(chat.id, "m1")
        await asyncio.wrap_future(frozen)
        frozen_at = time.monotonic()
        m2 = await bob.send_text(chat.id, "while alice is frozen")
        noticed = None
        pushed = None
        while time.monotonic() - frozen_at < 12:
            seen = await _metrics(server.url)
            if noticed is None and seen.get("tidings_websocket_connections") == 1.0:
                noticed = time.monotonic() - frozen_at  # only bob's socket is left
            if pushed is None and server.log_text().count("push (log)") > pushes_before:
                pushed = time.monotonic() - frozen_at
            if noticed is not None and pushed is not None:
                break
            await asyncio.sleep(0.1)
        figures["server_noticed_s"] = noticed
        figures["pushed_s"] = pushed
        figures["pending_after"] = (await _metrics(server.url)).get("tidings_pending_envelopes")
        figures["m1_at_bob"] = (await _status(bob, m1.id)).value
        figures["m2_at_bob"] = (await _status(bob, m2.id)).value
        # the push wake-up: the service process syncs alice's profile while the app is frozen
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVICE, str(alice_profile), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await service.communicate()
        figures["service"] = json.loads(out)
        if figures["service"] != "profile in use":
            for _ in range(100):
                if await _status(bob, m2.id) is MessageStatus.DELIVERED:
                    break
                await asyncio.sleep(0.05)
        figures["m1_after_service"] = (await _status(bob, m1.id)).value
        figures["m2_after_service"] = (await _status(bob, m2.id)).value
    finally:
        app.thaw.set()
        if how == "suspended":
            figures["resumed_current"] = app.run(alice.resume(wait=5))
        app.run(alice.close())
        app.stop()
        await bob.close()
    print(figures)
    return figures


async def test_a_spawned_background_is_frozen_with_the_socket_open(
    server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    figures = await _scenario(server, tmp_path, "spawned")
    # The one step background() gets writes the Ack (so m1 is delivered) but the close
    # handshake is a task of its own that never runs: the socket stays open.
    assert figures["m2_at_bob"] == "sent"
    assert figures["pushed_s"] is None  # the server believes alice online: no push
    assert figures["server_noticed_s"] is not None and figures["server_noticed_s"] >= 5
    assert figures["service"] == "profile in use"


async def test_suspend_closes_at_once_and_the_push_service_takes_over(
    server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    figures = await _scenario(server, tmp_path, "suspended")
    assert figures["m1_at_bob"] == "delivered"  # the Ack left before on_pause returned
    assert figures["server_noticed_s"] is not None and figures["server_noticed_s"] < 1
    assert figures["pushed_s"] is not None and figures["pushed_s"] < 2
    assert figures["service"] == ["while alice is frozen"]
    assert figures["m2_after_service"] == "delivered"
    assert figures["resumed_current"] is False  # the service wrote: the app reopens
