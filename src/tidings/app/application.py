"""The Kivy `App`: builds the screens, owns the client, routes client events to the screens.

See :mod:`tidings.app.tasks` for how Kivy and the client core share one asyncio loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager, SlideTransition

from tidings.app import channels, lifecycle, media_bubbles
from tidings.app.layout import NO_CHAT, NoChatScreen, PaneLayout
from tidings.app.local_notify import LocalNotifier
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
    ClientEvent,
    Connection,
    ConnectionChanged,
    ConnectionState,
    Conversation,
    ConversationUpdated,
    IdentityChanged,
    Message,
    MessageAdded,
    MessageRemoved,
    MessageUpdated,
    Notify,
    Synced,
    TransferProgress,
    TypingChanged,
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
#: Escape on desktop, the back button on Android.
BACK_KEY = 27


class Root(FloatLayout):  # type: ignore[misc]  # kivy is untyped
    """The screen manager with the toast layer above it."""


class TidingsApp(App):  # type: ignore[misc]
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

    async def _follow(self, events: AsyncIterator[ClientEvent]) -> None:
        async for event in events:
            try:
                self.dispatch_client_event(event)
            except Exception:
                log.exception("showing %r failed", event)

    def dispatch_client_event(self, event: ClientEvent) -> None:
        chat_list = self.screen("chat_list")
        chat = self.screen("chat")
        group_info = self.screen("group_info")
        assert isinstance(chat_list, ChatListScreen)
        assert isinstance(chat, ChatScreen)
        assert isinstance(group_info, GroupInfoScreen)
        if isinstance(event, ConnectionChanged):
            self._set_connection(event.connection)
        elif isinstance(event, MessageAdded):
            chat_list.on_message(event.message)
            chat.on_message_added(event.message)
        elif isinstance(event, MessageUpdated):
            chat_list.on_message(event.message)
            chat.on_message_updated(event.message)
        elif isinstance(event, MessageRemoved):
            chat.on_message_removed(event.conv_id, event.message_id)
        elif isinstance(event, ConversationUpdated):
            chat_list.on_conversation(event.conversation)
            chat.on_conversation(event.conversation)
            group_info.on_conversation(event.conversation)
            channel_info = self.screen("channel_info")
            if isinstance(channel_info, ChannelInfoScreen):
                channel_info.on_conversation(event.conversation)
            self._notifications().on_conversation(event.conversation)
        elif isinstance(event, Synced):
            self.tasks.spawn(chat_list.reload())
        elif isinstance(event, IdentityChanged):
            self._identity_changed(event, chat)
        elif isinstance(event, Notify):
            self.local_notifier.on_notify(event)
        elif isinstance(event, TransferProgress):
            media_bubbles.on_progress(event)
        elif isinstance(event, TypingChanged):
            self.typing.on_event(event)

    def _identity_changed(self, event: IdentityChanged, chat: ChatScreen) -> None:
        """A contact's safety number changed: remember it (the chat shows sending as paused
        when they had been verified), tell the user and the screens that show it."""
        name = event.username
        self.identity_changes[name] = self.identity_changes.get(name, False) or event.was_verified
        chat.on_identity_changed(name)
        safety = self.screen("safety")
        assert isinstance(safety, SafetyNumberScreen)
        safety.on_identity_changed(name, self.identity_changes[name])
        current = self.manager.current
        if (current == "chat" and chat.peer() == name) or (
            current == "safety" and safety.username == name
        ):
            return  # the screen itself says so
        if event.was_verified:
            self.notify(f"Your safety number with {name} changed: sending to {name} is paused")
        else:
            self.notify(f"Your safety number with {name} changed")

    def identity_verified(self, username: str) -> None:
        """The user verified `username` (again): sending to them resumes."""
        self.identity_changes.pop(username, None)
        chat = self.screen("chat")
        if isinstance(chat, ChatScreen):
            chat.on_identity_changed(username)

    def open_safety_number(self, username: str) -> None:
        """Show the safety number shared with `username`."""
        safety = self.screen("safety")
        assert isinstance(safety, SafetyNumberScreen)
        self.navigate("safety")
        safety.show(username)

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

    # ------------------------------------------------------------------ connection state

    def _set_connection(self, connection: Connection) -> None:
        self.connection_state = connection.state.value
        self._closed_reason = connection.last_error or "the connection ended"
        if connection.state is ConnectionState.OFFLINE and connection.retry_in is not None:
            self._retry_deadline = time.monotonic() + connection.retry_in
        else:
            self._retry_deadline = None
        self._render_connection()

    def _tick_connection(self, _dt: float) -> None:
        if self._retry_deadline is not None:
            self._render_connection()

    def _render_connection(self) -> None:
        state = self.connection_state
        if state == ConnectionState.ONLINE.value:
            self.connection_text = "Online"
        elif state == ConnectionState.CONNECTING.value:
            self.connection_text = "Connecting\u2026"
        elif state == ConnectionState.CLOSED.value:
            # ended for good: the device was removed, another connection took over, or an
            # update is needed (the core's reason says which); no retry countdown
            self.connection_text = f"Disconnected \u2014 {self._closed_reason}"
        elif self._retry_deadline is not None:
            left = round(self._retry_deadline - time.monotonic())
            self.connection_text = (
                f"Offline \u2014 retrying in {left} s"
                if left >= 1
                else "Offline \u2014 retrying now\u2026"
            )
        else:
            self.connection_text = "Offline"

    # ------------------------------------------------------------------ navigation

    def screen(self, name: str) -> AppScreen:
        return self._screens[name]

    def navigate(self, name: str, remember: bool = True) -> None:
        name = self.layout.resolve(name)
        current = self.manager.current
        if remember and current and current != name:
            self._stack.append(current)
        self.manager.transition = SlideTransition(direction="left", duration=0.18)
        self.manager.current = name
        self.screen(name).on_shown()

    def back(self) -> bool:
        """Go to the previous screen; False when there is none."""
        if not self._stack:
            return False
        name = self.layout.resolve(self._stack.pop())
        self.manager.transition = SlideTransition(direction="right", duration=0.18)
        self.manager.current = name
        self.screen(name).on_shown()
        return True

    def home(self) -> None:
        self._stack.clear()
        self.navigate("chat_list", remember=False)

    def _notifications(self) -> NotificationsScreen:
        screen = self.screen("notifications")
        assert isinstance(screen, NotificationsScreen)
        return screen

    def open_notifications(self, conv: Conversation | None) -> None:
        """A chat's notification level and mute (from its header or group info)."""
        if conv is not None and conv.kind == "channel":  # channels: all or nothing
            channels.toggle_mute(conv.id)
        elif conv is not None:
            self._notifications().show(conv)
            self.navigate("notifications")

    def open_message_info(self, message: Message) -> None:
        """Delivered/read per member and the edit history of a message (its menu's Info)."""
        info = self.screen("message_info")
        assert isinstance(info, MessageInfoScreen)
        self.navigate("message_info")
        info.show(message)

    def open_chat(self, conv_id: str, around: Any = None, replace: bool = False) -> None:
        """Show a conversation, at its latest messages or around message id `around`."""
        chat = self.screen("chat")
        assert isinstance(chat, ChatScreen)
        if replace:
            self._stack = ["chat_list"]
            self.navigate("chat", remember=False)
        else:
            self.navigate("chat")
        chat.open(conv_id, around)

    def _on_keyboard(self, _window: Any, key: int, *_args: Any) -> bool:
        if key == BACK_KEY:
            return self.back()
        return False

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
