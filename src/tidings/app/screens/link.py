"""Linking devices: this new device to an existing account (from onboarding), and a new device
to this account (from settings).

A new device asks the server for a provisioning request (`Client.link_device`) and shows the
link code it gets; the user enters that code on a device of the account, which approves it
(`Client.approve_device`) and seals the account's identity to the new device. The new device
then becomes a full device of the account and opens at the chat list.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kivy.core.clipboard import Clipboard
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty

from tidings.app.qr import camera_scanner, qr_texture
from tidings.app.screens.base import AppScreen
from tidings.client import Client

DEFAULT_DEVICE_NAME = "phone"


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", "") or str(exc)
    code = getattr(exc, "code", "")
    if code == "link_timeout":
        return "the code was not approved in time. Try again for a new code."
    if code == "bad_link":
        return "the code does not belong to this request. Try again for a new code."
    return str(message)


class LinkThisDeviceScreen(AppScreen):
    """Onboarding, second path: make this device one more device of an existing account."""

    #: asking the server / waiting for the approval
    busy = BooleanProperty(False)
    #: the link code to enter on the other device ("" until the server gave one)
    code = StringProperty("")
    device_name = StringProperty("")
    error = StringProperty("")
    #: the link code as a QR code, to scan with the other device (None without a code)
    qr = ObjectProperty(None, allownone=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._waiter: asyncio.Task[Client] | None = None

    def prefill(self, server_url: str) -> None:
        if not self.ids.server.text:
            self.ids.server.text = server_url
        if not self.ids.device.text:
            self.ids.device.text = DEFAULT_DEVICE_NAME

    def start(self) -> None:
        """Ask the server for a link code and wait for its approval."""
        if self.busy:
            return
        server_url = self.ids.server.text.strip()
        device_name = self.ids.device.text.strip()
        if not server_url or not device_name:
            self.error = "Enter the server address and a name for this device."
            return
        self.error = ""
        self.code = ""
        self.device_name = device_name
        self.busy = True
        profile: Path = self.tidings.profile
        self._waiter = self.tidings.tasks.spawn(
            Client.link_device(profile, server_url, device_name, on_code=self._got_code),
            on_done=self._linked,
            on_error=self._failed,
        )

    def _got_code(self, code: str) -> None:
        self.code = code

    def on_code(self, _instance: Any, code: str) -> None:
        self.qr = qr_texture(code) if code else None

    def _linked(self, client: Client) -> None:
        self._waiter = None
        self.tidings.tasks.spawn(self._attach(client), on_error=self._failed)

    async def _attach(self, client: Client) -> None:
        await self.tidings.attach(client)
        self.busy = False
        self.code = ""

    def _failed(self, exc: BaseException) -> None:
        self._waiter = None
        self.busy = False
        self.code = ""
        self.error = f"Could not link this device: {_reason(exc)}"

    def cancel(self) -> None:
        """Stop waiting (the code becomes useless: nobody opens what is sealed to it)."""
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None
        self.busy = False
        self.code = ""

    def copy_code(self) -> None:
        if self.code:
            Clipboard.copy(self.code)
            self.tidings.notify("Link code copied")

    def leave(self) -> None:
        self.error = ""
        self.tidings.back()

    def on_leave(self, *_args: Any) -> None:
        """Going back (the arrow, Escape or Android's back button) stops waiting."""
        self.cancel()


class ApproveDeviceScreen(AppScreen):
    """Settings → "Link a new device": enter the new device's code and approve it."""

    busy = BooleanProperty(False)
    error = StringProperty("")
    #: the confirmation after an approval ("" before)
    done = StringProperty("")
    #: a camera to scan the new device's QR code with (none on desktop: type or paste)
    can_scan = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scanner = camera_scanner()
        self.can_scan = self._scanner is not None

    def scan(self) -> None:
        """Scan the QR code the new device shows into the code field."""
        if self._scanner is not None:
            self._scanner(lambda code: setattr(self.ids.code, "text", "".join(code.split())))

    def on_shown(self) -> None:
        self.busy = False
        self.error = ""
        self.done = ""
        self.ids.code.text = ""
        if not self.ids.device.text:
            self.ids.device.text = DEFAULT_DEVICE_NAME

    def paste(self) -> None:
        pasted = Clipboard.paste() or ""
        self.ids.code.text = "".join(str(pasted).split())

    def approve(self) -> None:
        if self.busy:
            return
        code = "".join(self.ids.code.text.split())
        name = self.ids.device.text.strip()
        if not code or not name:
            self.error = "Enter the link code shown on the new device and a name for it."
            return
        self.error = ""
        self.done = ""
        self.busy = True

        def approved(device_id: int) -> None:
            self.busy = False
            self.ids.code.text = ""
            self.done = (
                f"\u201c{name}\u201d is now linked as device {device_id}. "
                "It receives the messages sent from now on."
            )

        def failed(exc: BaseException) -> None:
            self.busy = False
            reason = getattr(exc, "message", "") or str(exc)
            if getattr(exc, "code", "") == "bad_link":
                reason = "this is not a valid link code. Check it and try again."
            self.error = f"Could not link the device: {reason}"

        self.tidings.tasks.spawn(
            self.client.approve_device(code, name), on_done=approved, on_error=failed
        )
