"""Drive the app in-process, frame by frame: for the UI tests and the screenshot tool.

The app is prepared as `App.run()` would (`_run_prepare()`: build, add to the window, dispatch
`on_start`) but Kivy's main loop is not entered; :meth:`AppDriver.frames` renders frames with
`EventLoop.idle()` and yields to asyncio between them, so the app's client tasks — and any other
client the caller runs — make progress on the caller's loop, exactly as under `App.async_run`.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.base import EventLoop
from kivy.core.window import Window
from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels
from kivy.tests.common import UnitTestTouch
from kivy.uix.widget import Widget

from tidings.app.application import TidingsApp

PHONE_SIZE = (390, 844)


def write_png(path: Path, width: int, height: int, rgba_bottom_up: bytes) -> None:
    """Encode OpenGL's bottom-up RGBA rows as a PNG file."""
    stride = width * 4
    rows = [
        b"\x00" + rgba_bottom_up[y * stride : (y + 1) * stride] for y in range(height - 1, -1, -1)
    ]

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


class AppDriver:
    """A running app and the means to look at it and poke it."""

    def __init__(self, app: TidingsApp) -> None:
        self.app = app

    @classmethod
    async def start(
        cls,
        server_url: str | None,
        profile: Path,
        *,
        theme: str | None = None,
        size: tuple[int, int] = PHONE_SIZE,
    ) -> AppDriver:
        Window.size = size
        app = TidingsApp(server_url, profile, theme=theme)
        app._run_prepare()
        driver = cls(app)
        await driver.frames(2)
        return driver

    async def stop(self) -> None:
        app = self.app
        app.dispatch("on_stop")
        # the app's root and anything it left open above it (an actions sheet)
        for widget in list(Window.children):
            Window.remove_widget(widget)
        await app.shutdown()
        App._running_app = None

    # ------------------------------------------------------------------ time

    async def frames(self, count: int = 1) -> None:
        for _ in range(count):
            EventLoop.idle()
            await asyncio.sleep(0.005)

    async def wait_for(
        self, predicate: Callable[[], object], within: float = 20.0, what: str = ""
    ) -> None:
        """Render frames until `predicate()` is true; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            EventLoop.idle()
            if predicate():
                await self.frames(2)
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
            await asyncio.sleep(0.01)

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], within: float = 20.0, what: str = ""
    ) -> None:
        """Like :meth:`wait_for` with an async check (e.g. asking another client)."""
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what or check}")
            await self.frames(1)
        await self.frames(2)

    async def settle(self, seconds: float = 0.4) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.frames(1)

    # ------------------------------------------------------------------ input

    async def transitions_done(self) -> None:
        """Wait for a screen change to finish (the screen manager ignores touches meanwhile)."""
        await self.wait_for(
            lambda: not self.app.manager.transition.is_active, within=5, what="the transition"
        )

    async def tap(self, widget: Widget) -> None:
        await self.transitions_done()
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        await self.frames(1)
        touch.touch_up()
        await self.frames(2)

    async def long_press(
        self, widget: Widget, seconds: float = 1.0, until: Callable[[], object] | None = None
    ) -> None:
        """Hold a touch on `widget` for `seconds`, or, with `until`, until that is true (what
        the press opens: a slow frame never lets the finger go too early)."""
        await self.transitions_done()
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        if until is None:
            await self.settle(seconds)
        else:
            await self.wait_for(until, what="what the long press opens")
        touch.touch_up()
        await self.frames(2)

    async def type_text(self, text: str) -> None:
        await self.frames(2)
        for ch in text:
            if ch == "\n":
                await self.press_enter(shift=True)
            else:
                Window.dispatch("on_textinput", ch)
        await self.frames(1)

    async def press_enter(self, shift: bool = False) -> None:
        modifiers = ["shift"] if shift else []
        Window.dispatch("on_key_down", 13, 36, None, modifiers)
        Window.dispatch("on_key_up", 13, 36)
        await self.frames(1)

    async def scroll_to_top(self, scroller: Widget) -> None:
        scroller.scroll_y = 1.0
        await self.frames(2)

    # ------------------------------------------------------------------ looking

    def screenshot(self, path: Path) -> Path:
        """Save what the window shows as a PNG at `path`."""
        EventLoop.idle()
        width, height = (int(v) for v in Window.size)
        # RGBA rows are always 4-byte aligned (Kivy's own RGB screenshot skews at 390 px wide)
        pixels = glReadPixels(0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE)
        write_png(path, width, height, bytes(pixels))
        return path

    def overlay(self, kind: type[Any]) -> Any:
        """The sheet (a ModalView) of `kind` on the window, or None."""
        sheets = [w for w in Window.children if isinstance(w, kind)]
        return sheets[0] if sheets else None

    async def opened(self, kind: type[Any]) -> Any:
        """The sheet of `kind` once it is open: faded in (Kivy's ModalView fades in before
        `on_open`) and laid out, so a tap lands where its buttons show."""

        def shown() -> bool:
            sheet = self.overlay(kind)
            return sheet is not None and sheet._anim_alpha >= 1

        await self.wait_for(shown, what=f"the {kind.__name__} open")
        return self.overlay(kind)

    def walk(self) -> Iterator[Widget]:
        root = self.app.root
        return iter(()) if root is None else root.walk(restrict=True)

    def find(self, kind: type[Any], predicate: Callable[[Any], bool] | None = None) -> list[Any]:
        return [
            w for w in self.walk() if isinstance(w, kind) and (predicate is None or predicate(w))
        ]

    @property
    def current(self) -> str:
        name: str = self.app.manager.current
        return name
