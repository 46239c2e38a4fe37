"""Entry point of the app: `tidings app --server URL --profile DIR` calls :func:`run`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

#: The window on a desktop: a tall phone-shaped one.
DESKTOP_SIZE = (400, 780)


def run(server_url: str | None, profile: Path) -> None:
    """Open the app on `profile` (created on first start); `server_url` prefills onboarding."""
    # Kivy reads its own options from sys.argv unless told not to; the CLI owns the arguments.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from kivy.config import Config

    Config.set("graphics", "width", str(DESKTOP_SIZE[0]))
    Config.set("graphics", "height", str(DESKTOP_SIZE[1]))
    Config.set("input", "mouse", "mouse,multitouch_on_demand")
    Config.set("kivy", "exit_on_escape", "0")

    from tidings.app.application import TidingsApp

    profile.mkdir(parents=True, exist_ok=True)
    app = TidingsApp(server_url, profile)

    async def main() -> None:
        try:
            await app.async_run(async_lib="asyncio")
        finally:
            await app.shutdown()

    asyncio.run(main())
