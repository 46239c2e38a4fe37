"""Local notifications of the running app: what it shows on this device when the client core
says a message should alert (the ``Notify`` event) and the window is not in front. (The
Android push service, which runs without the app, posts its own: ``tidings.app.notifier``.)

Whether a message alerts is the core's decision (``tidings.client.push.should_notify``: own
messages, muted chats and levels are handled there); the app only decides *how* to show it.
The sender's name and a short preview are put together here, on the device: nothing of it
goes through the server (a push only wakes the app; it carries no text).

The notification is handed to a **sink**, ``(title, message) -> None``. On Android the default
sink is :class:`tidings.app.notifier.AndroidNotifier` (the push service's: the ``messages``
channel, one notification per chat, tapping opens the app), so the app and the service post
alike; elsewhere it is plyer's ``notification.notify`` (a desktop notification daemon). Where
there is none (a Linux box without a notification daemon, plyer not installed) the first
failure is logged once and later ones are dropped quietly: a missing notification never
breaks the app.

Hook for tests and embedders: assign ``app.local_notifier.sink`` to any callable taking
``(title, message)``; ``app.local_notifier.focused`` is the callable that tells whether the
window is in front (``Window.focus`` by default).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from tidings.client.types import Notify

log = logging.getLogger(__name__)

#: the longest preview shown in a notification, in characters
PREVIEW_CHARS = 80
APP_NAME = "Tidings"

Sink = Callable[[str, str], None]


def plyer_sink(title: str, message: str) -> None:
    """Show a notification through plyer (raises when this platform has no way to)."""
    try:  # the app extra installs plyer; without it there are no local notifications
        from plyer import notification  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise RuntimeError("plyer is not installed") from exc

    with warnings.catch_warnings():
        # plyer warns about each missing Linux backend before it gives up
        warnings.simplefilter("ignore")
        notification.notify(title=title, message=message, app_name=APP_NAME, timeout=8)


class AndroidSink:
    """Posts through :class:`AndroidNotifier`; given the chat, a newer message replaces its
    chat's notification as the push service's do."""

    def __init__(self) -> None:
        from tidings.app.notifier import AndroidNotifier

        self.notifier = AndroidNotifier()

    def __call__(self, title: str, message: str, conv_id: str = "") -> None:
        from tidings.app.notifier import Alert

        self.notifier.notify(Alert(conv_id or title, title, message))


def android_sink() -> AndroidSink | None:
    """The Android sink on Android (``kivy.utils.platform``), None elsewhere."""
    from kivy.utils import platform

    return AndroidSink() if platform == "android" else None


def default_sink() -> Sink:
    """Android's notifier on a phone, plyer elsewhere (see the module docstring)."""
    try:
        return android_sink() or plyer_sink
    except Exception:  # no notification manager: fall back to plyer, which logs its failure
        log.warning("the Android notifier is unavailable", exc_info=True)
        return plyer_sink


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """One line of ``text``, cut at ``limit`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "\u2026"


def describe(event: Notify) -> tuple[str, str]:
    """(title, message) of a notification: the sender (and the group), a short preview."""
    msg = event.message
    sender = msg.sender_name or event.title
    # a direct chat's title is the peer's name; a group's is its own
    in_group = bool(event.title) and event.title != sender
    title = f"{sender} in {event.title}" if in_group else sender
    body = preview(msg.body) if msg.body.strip() else "Sent an attachment"
    if event.mentioned:
        title = f"{title} mentioned you"
    return title, body


def _window_focused() -> bool:
    from kivy.core.window import Window

    return bool(Window.focus)


class LocalNotifier:
    """Turns ``Notify`` events into local notifications while the window is not in front."""

    def __init__(self, sink: Sink | None = None, focused: Callable[[], bool] | None = None) -> None:
        self.sink: Sink = sink if sink is not None else default_sink()
        self.focused: Callable[[], bool] = focused if focused is not None else _window_focused
        self._failed_once = False

    def on_notify(self, event: Notify) -> bool:
        """Show ``event`` unless the window is in front; True when it was handed to the sink."""
        try:
            if self.focused():
                return False
        except Exception:  # a window going away: treat it as not focused
            log.debug("cannot tell whether the window is focused", exc_info=True)
        title, message = describe(event)
        try:
            if isinstance(self.sink, AndroidSink):
                self.sink(title, message, conv_id=event.message.conv_id)
            else:
                self.sink(title, message)
        except Exception as exc:
            if not self._failed_once:
                self._failed_once = True
                log.warning("local notifications are not available here: %s", exc)
            return False
        return True
