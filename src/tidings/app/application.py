"""The Kivy `App`: builds the screens, owns the client, routes client events to the screens.

See :mod:`tidings.app.tasks` for how Kivy and the client core share one asyncio loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from tidings.app import lifecycle
from tidings.app.client_events import ClientEvents
from tidings.app.layout import NO_CHAT, NoChatScreen, PaneLayout
from tidings.app.local_notify import LocalNotifier
from tidings.app.navigation import Navigation
from tidings.app.push_setup import register_on_android
from tidings.app.screens.backup import BackupScreen
from tidings.app.screens.base import AppScreen
from tidings.app.screens.channel_info import ChannelInfoScreen
from tidings.app.screens.chat import ChatScreen
from tidings.app.screens.chat_list import ChatListScreen
from tidings.app.screens.devices import DevicesScreen
from tidings.app.screens.group_info import GroupInfoScreen
from tidings.app.screens.join_channel import JoinChannelScreen, NewChannelScreen
from tidings.app.screens.link import ApproveDeviceScreen, LinkThisDeviceScreen
from tidings.app.screens.message_info import MessageInfoScreen
from tidings.app.screens.new_chat import NewChatScreen
from tidings.app.screens.new_group import NewGroupScreen
from tidings.app.screens.notifications import NotificationsScreen
from tidings.app.screens.onboarding import OnboardingScreen
from tidings.app.screens.profile import ProfileScreen
from tidings.app.screens.profile_error import ProfileErrorScreen, breakable
from tidings.app.screens.restore import RestoreScreen
from tidings.app.screens.safety import SafetyNumberScreen
from tidings.app.screens.search import SearchScreen
from tidings.app.screens.settings import SettingsScreen
from tidings.app.screens.splash import SplashScreen
from tidings.app.tasks import Tasks
from tidings.app.theme import Theme, register_fonts
from tidings.app.typing_indicator import TypingState
from tidings.app.widgets import Toast
from tidings.client import Client
from tidings.client.errors import ClientError, ProfileCorrupt, ProfileNotFound
from tidings.client.types import (
    ConnectionState,
)

log = logging.getLogger(__name__)

KV_DIR = Path(__file__).parent / "kv"
#: KV files in load order: shared widgets first, then one per screen.
KV_FILES = (
    "widgets",
    "splash",
    "onboarding",
    "chat_list",
    "chat",
    "media",
    "search",
    "new_chat",
    "new_group",
    "group_info",
    "settings",
    "backup",
    "notifications",
    "safety",
    "link",
    "profile_error",
    "everyday",
    "message_info",
    "devices",
    "profile",
    "channels",
)
SETTINGS_FILE = "app-settings.json"


class Root(FloatLayout):  # type: ignore[misc]  # kivy is untyped
    """The screen manager with the toast layer above it."""


class TidingsApp(Navigation, ClientEvents, App):  # type: ignore[misc]
    title = "Tidings"
    theme = ObjectProperty(None)
    connection_state = StringProperty(ConnectionState.CONNECTING.value)
    connection_text = StringProperty("Connecting\u2026")
    client_attached = BooleanProperty(False)

    def __init__(self, server_url: str | None, profile: Path, theme: str | None = None) -> None:
        super().__init__()
        self.server_url = server_url
        self.profile = profile
        self.theme = Theme(theme or self._saved_theme())
        self.client: Client | None = None
        self.tasks = Tasks(self.report_error)
        self.started_at = time.perf_counter()
        #: seconds from construction to the first filled chat list (None until then)
        self.time_to_chat_list: float | None = None
        self._stack: list[str] = []
        self._pump: asyncio.Task[None] | None = None
        self._retry_deadline: float | None = None
        self._closed_reason = ""
        self._kv_loaded = False
        self._ticker: Any = None
        #: contacts whose identity key changed in this session (username -> had been verified),
        #: until the user verifies them again
        self.identity_changes: dict[str, bool] = {}
        #: local notifications for Notify events (tests swap its sink: tidings.app.local_notify)
        self.local_notifier = LocalNotifier()
        #: who is typing where (tidings.app.typing_indicator)
        self.typing = TypingState(self)

    # ------------------------------------------------------------------ building

    def build(self) -> Root:
        register_fonts()
        if not self._kv_loaded:
            for name in KV_FILES:
                Builder.unload_file(str(KV_DIR / f"{name}.kv"))
                Builder.load_file(str(KV_DIR / f"{name}.kv"))
            self._kv_loaded = True
        root = Root()
        manager = ScreenManager(transition=NoTransition())
        self._screens: dict[str, AppScreen] = {}
        for screen in (
            SplashScreen(name="splash"),
            OnboardingScreen(name="onboarding"),
            ChatListScreen(name="chat_list"),
            ChatScreen(name="chat"),
            SearchScreen(name="search"),
            NewChatScreen(name="new_chat"),
            NewGroupScreen(name="new_group"),
            GroupInfoScreen(name="group_info"),
            SettingsScreen(name="settings"),
            BackupScreen(name="backup"),
            RestoreScreen(name="restore"),
            NotificationsScreen(name="notifications"),
            SafetyNumberScreen(name="safety"),
            LinkThisDeviceScreen(name="link_this_device"),
            ApproveDeviceScreen(name="approve_device"),
            ProfileErrorScreen(name="profile_error"),
            NoChatScreen(name=NO_CHAT),
            MessageInfoScreen(name="message_info"),
            DevicesScreen(name="devices"),
            ProfileScreen(name="profile"),
            ChannelInfoScreen(name="channel_info"),
            JoinChannelScreen(name="join_channel"),
            NewChannelScreen(name="new_channel"),
        ):
            manager.add_widget(screen)
            self._screens[screen.name] = screen
        root.add_widget(manager)
        self.manager = manager
        # two panes on a wide window (chat list beside the chat), one screen on a phone
        self.layout = PaneLayout(root, manager, self._screens["chat_list"])
        self.toast = Toast()
        root.add_widget(self.toast)
        # on a phone, keep the focused field (the composer) above the soft keyboard
        Window.softinput_mode = "below_target"
        Window.clearcolor = self.theme.bg
        self.theme.bind(bg=lambda _t, value: setattr(Window, "clearcolor", value))
        self.theme.bind(name=self._restyle)
        Window.bind(on_keyboard=self._on_keyboard)
        self._ticker = Clock.schedule_interval(self._tick_connection, 1.0)
        return root

    def on_stop(self) -> None:
        Window.unbind(on_keyboard=self._on_keyboard)
        if self._ticker is not None:
            self._ticker.cancel()

    def on_start(self) -> None:
        self.tasks.spawn(self._boot())

    async def _boot(self) -> None:
        try:
            client = await Client.open(self.profile)
        except ProfileNotFound:
            onboarding = self.screen("onboarding")
            assert isinstance(onboarding, OnboardingScreen)
            onboarding.prefill(self.server_url)
            self.navigate("onboarding", remember=False)
            return
        except ClientError as exc:  # a damaged profile (ProfileCorrupt), an unreadable one
            self.show_profile_error(exc)
            return
        await self.attach(client)

    def show_profile_error(self, exc: ClientError) -> None:
        """The profile cannot be opened: say why and what to do instead of a frozen splash."""
        screen = self.screen("profile_error")
        assert isinstance(screen, ProfileErrorScreen)
        if isinstance(exc, ProfileCorrupt):
            screen.title = "This profile is damaged"
        screen.message = breakable(exc.message or exc.code)
        self.navigate("profile_error", remember=False)

    async def attach(self, client: Client) -> None:
        """Use `client` from now on: follow its events and show the chat list."""
        self.client = client
        self.client_attached = True
        self._set_connection(client.connection)
        # subscribe before starting, so that no event of the first sync is missed
        self._pump = self.tasks.spawn(self._follow(client.events()))
        await client.start()
        # Android: the notification permission and this phone's push registration
        self.tasks.spawn(register_on_android(client, self.profile))
        self._stack.clear()
        self.layout.enable()
        self.navigate("chat_list", remember=False)
        chat_list = self.screen("chat_list")
        assert isinstance(chat_list, ChatListScreen)
        await chat_list.reload()

    # Android: paused apps close their socket (the server then pushes), resumed ones reconnect
    def on_pause(self) -> bool:
        lifecycle.pause(self)  # synchronously: the loop freezes when this returns
        return True

    def on_resume(self) -> None:
        self.tasks.spawn(lifecycle.resume(self))

    def first_list_shown(self) -> None:
        if self.time_to_chat_list is None:
            self.time_to_chat_list = time.perf_counter() - self.started_at
            log.info("chat list shown %.3f s after start", self.time_to_chat_list)

    # ------------------------------------------------------------------ misc

    def require_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("no account yet")
        return self.client

    def report_error(self, exc: BaseException) -> None:
        if isinstance(exc, ClientError):
            self.notify(exc.message or exc.code)
        else:
            self.notify(f"Something went wrong: {exc}")

    def notify(self, text: str) -> None:
        self.toast.show(text)

    def _restyle(self, _theme: Theme, _name: str) -> None:
        for name in ("chat", "search"):
            screen = self.screen(name)
            if isinstance(screen, ChatScreen | SearchScreen):
                screen.restyle()

    def switch_theme(self, name: str) -> None:
        self.theme.apply(name)
        self._save_settings({"theme": name})

    def _saved_theme(self) -> str:
        try:
            data = json.loads((self.profile / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            return "light"
        name = data.get("theme") if isinstance(data, dict) else None
        return name if isinstance(name, str) and name in Theme.names() else "light"

    def _save_settings(self, values: dict[str, str]) -> None:
        try:
            self.profile.mkdir(parents=True, exist_ok=True)
            (self.profile / SETTINGS_FILE).write_text(json.dumps(values))
        except OSError as exc:
            log.warning("cannot save app settings: %s", exc)

    async def shutdown(self) -> None:
        """Stop following the client and close it (after the Kivy loop has ended)."""
        if self._pump is not None:
            self._pump.cancel()
        await self.tasks.cancel_all()
        if self.client is not None:
            await self.client.close()
            self.client = None
