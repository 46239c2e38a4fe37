"""Regenerate the app's screenshots: `python -m tidings.app.screenshots docs/screenshots`.

Starts a throw-away server process, fills it with a few people and conversations through the
public client API, then drives the real app (see :mod:`tidings.app.harness`) and saves the chat
list, a chat, a chat in several scripts (emoji, CJK, Arabic), search results, group info, a
safety number and the two-pane desktop layout in the light and the dark theme.
Needs a display (run it under `xvfb-run` on a headless machine, as `make screenshots` does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx

os.environ.setdefault("KIVY_NO_ARGS", "1")

from tidings.client import Client  # after the Kivy environment is set
from tidings.client.types import Message, MessageStatus

PHONE = (390, 844)
DESKTOP = (1280, 800)
#: the conversation in several scripts (its title too)
TRIP = "Trip to Kyoto \u65c5\u884c \u2708\ufe0f"
START_TIMEOUT = 20.0


class LocalServer:
    """`python -m tidings.server` on a free loopback port, for as long as the shots take."""

    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "server.log").open("ab")
        self._proc = subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [
                sys.executable,
                *("-m", "tidings.server", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--data", str(self.data_dir)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become healthy")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


async def until(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo content did not settle")
        await asyncio.sleep(0.05)


async def status_is(client: Client, conv_id: str, message: Message, status: MessageStatus) -> None:
    async def reached() -> bool:
        page = await client.history(conv_id)
        return any(m.id == message.id and m.status == status for m in page.messages)

    await until(reached)


async def has_message(client: Client, conv_id: str, message: Message) -> None:
    async def arrived() -> bool:
        return await client.message(message.id) is not None

    await until(arrived)


async def populate(server_url: str, root: Path) -> tuple[Path, list[Client]]:
    """Create alice (whose profile the app opens) and her friends, and their conversations.

    Returns alice's profile and the friends' running clients (to be closed by the caller)."""
    alice = await Client.create_account(root / "alice", server_url, "alice")
    friends = [
        await Client.create_account(root / name, server_url, name)
        for name in ("bob", "carol", "dave")
    ]
    bob, carol, dave = friends
    for client in (alice, *friends):
        await client.start()
    for client in (alice, *friends):
        await client.wait_synced(15)

    with_dave = await dave.open_direct("alice")
    thanks = await dave.send_text(with_dave.id, "Finished the book you lent me \u2014 loved it")
    await has_message(alice, with_dave.id, thanks)
    await alice.mark_read(with_dave.id)
    reply = await alice.send_text(with_dave.id, "Told you! The ending is something else")
    await has_message(dave, with_dave.id, reply)
    await dave.mark_read(with_dave.id)
    await status_is(alice, with_dave.id, reply, MessageStatus.READ)

    with_bob = await bob.open_direct("alice")
    ask = await bob.send_text(with_bob.id, "Hey Alice! Still on for the climbing gym tonight?")
    await has_message(alice, with_bob.id, ask)
    await alice.mark_read(with_bob.id)
    yes = await alice.send_text(with_bob.id, "Yes! 7 pm works for me \U0001f600")
    await has_message(bob, with_bob.id, yes)
    chalk = await bob.send_text(with_bob.id, "Great, I'll bring the spare chalk bag and the rope")
    await has_message(alice, with_bob.id, chalk)
    await bob.react(with_bob.id, yes.id, "\u2764")
    await alice.mark_read(with_bob.id)
    await bob.mark_read(with_bob.id)
    await status_is(alice, with_bob.id, yes, MessageStatus.READ)
    perfect = await alice.send_text(
        with_bob.id, "Perfect. I booked the bouldering wall until 9", reply_to=chalk.id
    )
    shoes = await alice.send_text(with_bob.id, "Don't forget your shoes this time \U0001f602")
    await status_is(alice, with_bob.id, perfect, MessageStatus.DELIVERED)
    await status_is(alice, with_bob.id, shoes, MessageStatus.DELIVERED)

    hike = await alice.create_group("Weekend hike", ["carol", "bob", "dave"])
    await until(lambda: _knows(carol, hike.id))
    await until(lambda: _knows(bob, hike.id))
    plan = await carol.send_text(
        hike.id, "Trail map for Saturday is up: 14 km with a lake halfway for lunch"
    )
    await has_message(bob, hike.id, plan)
    count_me = await bob.send_text(hike.id, "Count me in \u2714")
    await has_message(alice, hike.id, count_me)
    await alice.mark_read(hike.id)
    snacks = await alice.send_text(hike.id, "I'll bring snacks. Who is driving to the trail?")
    await has_message(carol, hike.id, snacks)
    seats = await carol.send_text(hike.id, "I can take three people, leaving at 8")
    await has_message(alice, hike.id, seats)

    trip = await carol.create_group(TRIP, ["alice", "dave"])
    await until(lambda: _knows(dave, trip.id))
    await until(lambda: _knows(alice, trip.id))
    kyoto = await carol.send_text(
        trip.id,
        "\u4eac\u90fd\u306e\u5bbf\u3001\u4e88\u7d04\u3057\u307e\u3057\u305f\uff01 \U0001f3ef",
    )
    await has_message(dave, trip.id, kyoto)
    arabic = await dave.send_text(
        trip.id,
        # "Great! See you at the airport"
        "\u0645\u0645\u062a\u0627\u0632! \u0623\u0631\u0627\u0643\u0645 "
        "\u0641\u064a \u0627\u0644\u0645\u0637\u0627\u0631 \u2708\ufe0f",
    )
    await has_message(alice, trip.id, arabic)
    await alice.react(trip.id, kyoto.id, "\U0001f389")
    await dave.react(trip.id, kyoto.id, "\U0001f389")
    await alice.mark_read(trip.id)
    train = await alice.send_text(trip.id, "Shinkansen tickets: 2 \u00d7 \u00a514,170 \U0001f684")
    await has_message(carol, trip.id, train)
    await alice.edit(train.id, "Shinkansen tickets: 3 \u00d7 \u00a514,170 \U0001f684")
    await has_message(dave, trip.id, train)

    notes = await alice.note_to_self()
    await alice.send_text(notes.id, "Passport \u2714\ufe0f  Yen \U0001f4b4  Adapter \U0001f50c")

    with_carol = await carol.open_direct("alice")
    await carol.send_text(with_carol.id, "Did you see the photos from the lake trail?")
    last = await carol.send_text(with_carol.id, "The sunset one is my new wallpaper")
    await has_message(alice, with_carol.id, last)
    await alice.close()
    return root / "alice", friends


async def _knows(client: Client, conv_id: str) -> bool:
    return any(c.id == conv_id for c in await client.conversations())


async def shoot(out_dir: Path, themes: Sequence[str] = ("light", "dark")) -> list[Path]:
    from kivy.core.window import Window

    from tidings.app.bubbles import MessageRow
    from tidings.app.harness import AppDriver
    from tidings.app.screens.chat import ChatScreen
    from tidings.app.screens.chat_list import ChatListScreen
    from tidings.app.screens.group_info import MemberRow
    from tidings.app.screens.safety import SafetyNumberScreen
    from tidings.app.screens.search import SearchResult

    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tidings-shots-") as tmp:
        server = LocalServer(Path(tmp) / "server")
        server.start()
        friends: list[Client] = []
        try:
            profile, friends = await populate(server.url, Path(tmp))
            driver = await AppDriver.start(server.url, profile, theme=themes[0], size=PHONE)
            app = driver.app
            chat_list = app.screen("chat_list")
            chat = app.screen("chat")
            assert isinstance(chat_list, ChatListScreen)
            assert isinstance(chat, ChatScreen)
            await driver.wait_for(
                lambda: len(chat_list.conversations) == 6 and app.connection_state == "online",
                what="six conversations, online",
            )
            titles = {c.title: c.id for c in chat_list.conversations.values()}
            safety = app.screen("safety")
            assert isinstance(safety, SafetyNumberScreen)
            for theme in themes:
                app.switch_theme(theme)
                app.home()
                await driver.settle(0.6)
                saved.append(driver.screenshot(out_dir / f"chat-list-{theme}.png"))

                app.open_chat(titles["bob"])
                await driver.wait_for(lambda: len(driver.find(MessageRow)) >= 5, what="bob chat")
                await driver.settle(0.8)
                saved.append(driver.screenshot(out_dir / f"chat-{theme}.png"))

                app.open_chat(titles["Weekend hike"])
                await driver.wait_for(lambda: len(driver.find(MessageRow)) >= 4, what="group")
                await driver.settle(0.6)
                saved.append(driver.screenshot(out_dir / f"group-chat-{theme}.png"))
                app.screen("chat")
                chat.open_info()
                await driver.wait_for(lambda: len(driver.find(MemberRow)) == 4, what="members")
                await driver.settle(0.6)
                saved.append(driver.screenshot(out_dir / f"group-info-{theme}.png"))

                app.open_chat(titles[TRIP])
                await driver.wait_for(lambda: len(driver.find(MessageRow)) >= 3, what="trip")
                await driver.settle(0.8)
                saved.append(driver.screenshot(out_dir / f"intl-chat-{theme}.png"))

                app.open_safety_number("bob")
                await driver.wait_for(
                    lambda: safety.number and not safety.busy, what="the safety number"
                )
                await driver.settle(0.6)
                saved.append(driver.screenshot(out_dir / f"safety-{theme}.png"))

                app.home()
                app.navigate("search")
                search = app.screen("search")
                search.ids.query.text = "trail"
                await driver.wait_for(
                    lambda: len(driver.find(SearchResult)) >= 2, what="search results"
                )
                await driver.settle(0.6)
                saved.append(driver.screenshot(out_dir / f"search-{theme}.png"))
                search.ids.query.text = ""
                search.ids.query.focus = False

                Window.size = DESKTOP
                await driver.wait_for(lambda: app.layout.wide, what="two panes")
                app.open_chat(titles["bob"])
                await driver.wait_for(lambda: len(driver.find(MessageRow)) >= 5, what="bob chat")
                await driver.settle(0.8)
                saved.append(driver.screenshot(out_dir / f"desktop-{theme}.png"))
                Window.size = PHONE
                await driver.wait_for(lambda: not app.layout.wide, what="one pane")
            await driver.stop()
        finally:
            for client in friends:
                await client.close()
            server.stop()
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidings.app.screenshots", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="where the PNG files go")
    args = parser.parse_args(argv)
    for path in asyncio.run(shoot(args.out_dir)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
