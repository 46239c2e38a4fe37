"""Account, device, server and the theme switch."""

from __future__ import annotations

from kivy.properties import ObjectProperty, StringProperty

from tidings.app.avatars import texture_of
from tidings.app.privacy import PrivacySection
from tidings.app.screens.base import AppScreen
from tidings.client.types import Profile


class SettingsScreen(AppScreen):
    username = StringProperty("")
    account_id = StringProperty("")
    device_id = StringProperty("")
    server = StringProperty("")
    #: your profile's name (empty: none set) and photo
    display_name = StringProperty("")
    photo = ObjectProperty(None, allownone=True)

    def on_shown(self) -> None:
        account = self.client.account
        self.username = account.username
        self.account_id = account.account_id
        self.device_id = str(account.device_id)
        self.server = account.server_url
        self.ids.push.refresh()
        privacy = self.ids.privacy
        assert isinstance(privacy, PrivacySection)
        privacy.refresh()
        self.tidings.tasks.spawn(self.client.profile_of(), on_done=self._show_profile)

    def _show_profile(self, profile: Profile) -> None:
        self.display_name = profile.name if profile.name != profile.username else ""
        self.photo = texture_of(profile.avatar)
