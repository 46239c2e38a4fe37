"""Account, device, server and the theme switch."""

from __future__ import annotations

from kivy.properties import StringProperty

from tidings.app.screens.base import AppScreen


class SettingsScreen(AppScreen):
    username = StringProperty("")
    account_id = StringProperty("")
    device_id = StringProperty("")
    server = StringProperty("")

    def on_shown(self) -> None:
        account = self.client.account
        self.username = account.username
        self.account_id = account.account_id
        self.device_id = str(account.device_id)
        self.server = account.server_url
        self.ids.push.refresh()
