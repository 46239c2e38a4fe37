"""Onboarding → "I have an account": restore it on this device from its encrypted backup with
the username and the backup passphrase (:func:`tidings.client.backup.recovery.recover_account`),
then show the chat list with the restored history.

A wrong passphrase and the server's slowing of repeated failures are told apart: after too
many wrong tries the server refuses for a while, and the screen says how long.
"""

from __future__ import annotations

import re
import time
from typing import Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, StringProperty

from tidings.app.screens.base import AppScreen
from tidings.client import Client
from tidings.client.backup.recovery import recover_account
from tidings.client.backup.service import WrongPassphraseError
from tidings.client.errors import ClientError, NotConnected, RateLimited

DEFAULT_SERVER = "http://127.0.0.1:8080"
STEPS = {"derive": "Checking the passphrase", "restore": "Restoring your history"}


def retry_after(message: str) -> int | None:
    """The seconds a ``rate_limited`` answer asks to wait ("try again in 4 s")."""
    found = re.search(r"(\d+)\s*s\b", message)
    return int(found.group(1)) if found else None


class RestoreScreen(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")
    progress = StringProperty("")
    #: seconds until the server takes another try (0: now)
    wait_left = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._retry_at = 0.0
        self._ticker: Any = None

    def prefill(self, server_url: str | None) -> None:
        self.ids.server.text = server_url or DEFAULT_SERVER
        self.error = ""
        self.progress = ""

    def restore(self) -> None:
        if self.busy or time.monotonic() < self._retry_at:
            return
        server_url = self.ids.server.text.strip()
        username = self.ids.username.text.strip().lstrip("@")
        passphrase = self.ids.passphrase.text
        if not server_url or not username or not passphrase:
            self.error = "Enter the server, your username and your backup passphrase."
            return
        self.error = ""
        self.busy = True
        self.progress = "Checking the passphrase\u2026"
        self.tidings.tasks.spawn(
            recover_account(
                server_url, self.tidings.profile, username, passphrase,
                device_name="restored", on_progress=self._step,
            ),
            on_done=self._restored,
            on_error=self._failed,
        )  # fmt: skip

    def _step(self, step: str, done: int, total: int) -> None:
        name = STEPS.get(step, step)
        self.progress = f"{name}\u2026" if step == "derive" else f"{name}\u2026 {done} of {total}"

    def _restored(self, client: Client) -> None:
        self.progress = "Starting\u2026"
        self.ids.passphrase.text = ""
        self.tidings.tasks.spawn(self.tidings.attach(client), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.progress = ""
        if isinstance(exc, WrongPassphraseError):
            self.error = (
                "That passphrase does not open a backup of this account. Check the username"
                " and the passphrase (letter case and spaces count)."
            )
        elif isinstance(exc, RateLimited):
            seconds = retry_after(exc.message) or 1
            self._retry_at = time.monotonic() + seconds
            self.error = f"Too many wrong passphrases. Try again in {seconds} s."
            self._tick(0)
            if self._ticker is None:
                self._ticker = Clock.schedule_interval(self._tick, 0.5)
        elif isinstance(exc, NotConnected):
            self.error = f"The server cannot be reached: {exc.message}"
        elif isinstance(exc, ClientError):
            self.error = f"Could not restore: {exc.message or exc.code}"
        else:
            self.error = f"Could not restore: {exc}"

    def _tick(self, _dt: float) -> None:
        left = self._retry_at - time.monotonic()
        if left <= 0:
            self.wait_left = ""
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            return
        self.wait_left = f"You can try again in {int(left) + 1} s"
