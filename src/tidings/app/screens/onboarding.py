"""First start: pick a server and a username; the client core creates the account. Or link
this device to an account that exists on another device (:mod:`tidings.app.screens.link`)."""

from __future__ import annotations

from pathlib import Path

from kivy.properties import BooleanProperty, StringProperty

from tidings.app.screens.base import AppScreen
from tidings.app.screens.link import LinkThisDeviceScreen
from tidings.app.screens.profile import ProfileScreen
from tidings.client import Client

DEFAULT_SERVER = "http://127.0.0.1:8080"


class OnboardingScreen(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")

    def prefill(self, server_url: str | None) -> None:
        self.ids.server.text = server_url or DEFAULT_SERVER

    def create_account(self) -> None:
        if self.busy:
            return
        server_url = self.ids.server.text.strip()
        username = self.ids.username.text.strip()
        if not server_url or not username:
            self.error = "Enter the server address and a username."
            return
        self.error = ""
        self.busy = True
        profile: Path = self.tidings.profile
        self.tidings.tasks.spawn(
            Client.create_account(profile, server_url, username),
            on_done=self._created,
            on_error=self._failed,
        )

    def _created(self, client: Client) -> None:
        self.tidings.tasks.spawn(
            self.tidings.attach(client), on_done=self._ask_name, on_error=self._failed
        )

    def _ask_name(self, _result: object) -> None:
        """Then a display name (skippable): screens/profile.py."""
        self.busy = False
        profile = self.tidings.screen("profile")
        if isinstance(profile, ProfileScreen):
            profile.start_welcome()

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        message = getattr(exc, "message", "") or str(exc)
        self.error = f"Could not create the account: {message}"

    def link_this_device(self) -> None:
        """The other path: this device joins an existing account."""
        link = self.tidings.screen("link_this_device")
        if isinstance(link, LinkThisDeviceScreen):
            link.prefill(self.ids.server.text.strip() or DEFAULT_SERVER)
        self.error = ""
        self.tidings.navigate("link_this_device")
