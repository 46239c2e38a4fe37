"""Your profile: display name, about and avatar (end-to-end encrypted by the client core,
which also resizes the picture). Also the step after creating an account, where it asks for
a display name (skippable)."""

from __future__ import annotations

from pathlib import Path

from kivy.properties import BooleanProperty, ObjectProperty, StringProperty

from tidings.app import attach
from tidings.app.avatars import texture_of
from tidings.app.screens.base import AppScreen
from tidings.client.types import Profile

IMAGE_FILTERS = ["*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.bmp"]


class ProfileScreen(AppScreen):
    #: right after the account was created: "Skip" instead of the back arrow
    welcome = BooleanProperty(False)
    busy = BooleanProperty(False)
    error = StringProperty("")
    username = StringProperty("")
    #: the avatar shown (the saved one, or the picked file's once saved)
    photo = ObjectProperty(None, allownone=True)
    #: a picked picture not saved yet
    picked = StringProperty("")
    remove_avatar = BooleanProperty(False)

    def start_welcome(self) -> None:
        """After onboarding: ask for a display name."""
        self.welcome = True
        self.tidings.navigate("profile")

    def on_shown(self) -> None:
        self.error = ""
        self.picked = ""
        self.remove_avatar = False
        self.username = self.client.account.username
        self.tidings.tasks.spawn(self.client.profile_of(), on_done=self._show)

    def _show(self, profile: Profile) -> None:
        self.ids.name.text = profile.name if profile.name != profile.username else ""
        self.ids.about.text = profile.about
        self.photo = texture_of(profile.avatar)

    def pick_avatar(self) -> None:
        attach.PICKER("Choose a profile photo", IMAGE_FILTERS, self._picked)

    def _picked(self, path: Path) -> None:
        self.picked = str(path)
        self.remove_avatar = False
        self.save(stay=True)

    def drop_avatar(self) -> None:
        self.picked = ""
        self.remove_avatar = True
        self.save(stay=True)

    def save(self, stay: bool = False) -> None:
        if self.busy:
            return
        self.busy = True
        self.error = ""
        avatar = Path(self.picked) if self.picked else None
        self.tidings.tasks.spawn(
            self.client.set_profile(
                name=self.ids.name.text.strip(),
                about=self.ids.about.text.strip(),
                avatar=avatar,
                remove_avatar=self.remove_avatar,
            ),
            on_done=lambda profile: self._saved(profile, stay),
            on_error=self._failed,
        )

    def _saved(self, profile: Profile, stay: bool) -> None:
        self.busy = False
        self.picked = ""
        self.remove_avatar = False
        self.photo = texture_of(profile.avatar)
        if not stay:
            self.tidings.notify("Profile saved")
            self.done()

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.picked = ""
        message = getattr(exc, "message", "") or str(exc)
        self.error = f"Could not save the profile: {message}"

    def done(self) -> None:
        """Back (to settings), or on to the chat list after onboarding."""
        if self.welcome:
            self.welcome = False
            self.tidings.home()
        else:
            self.tidings.back()
