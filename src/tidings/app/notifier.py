"""Local notifications for messages that should alert (the client's ``Notify`` events).

On Android they go through a notification channel (created once; Android 8+ requires one, and
Android 13+ shows nothing without the ``POST_NOTIFICATIONS`` permission the app asks for), via
pyjnius; elsewhere they are logged. Tests inject their own :class:`Notifier`.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

try:  # pyjnius, on Android only
    from jnius import autoclass  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    autoclass = None

__all__ = ["Alert", "AndroidNotifier", "LogNotifier", "Notifier", "autoclass", "platform_notifier"]

log = logging.getLogger(__name__)

#: the notification channel of new messages (its name is what the user sees in settings)
CHANNEL_ID = "messages"
CHANNEL_NAME = "Messages"
#: characters of a message shown in its notification
PREVIEW_CHARS = 200


@dataclass(frozen=True)
class Alert:
    """One notification: a conversation's title, the text shown, and whom it is about."""

    conv_id: str
    title: str
    text: str
    mentioned: bool = False


class Notifier(Protocol):
    def notify(self, alert: Alert) -> None: ...


class LogNotifier:
    """The desktop's notifier: a log line per alert (never the text above debug level)."""

    def notify(self, alert: Alert) -> None:
        log.info("notification in %s%s", alert.conv_id, " (mention)" if alert.mentioned else "")
        log.debug("notification text: %s: %s", alert.title, alert.text)


class AndroidNotifier:
    """Posts alerts through Android's NotificationManager (pyjnius), one per conversation
    (a newer message replaces the conversation's notification)."""

    def __init__(self, context: Any | None = None) -> None:
        if autoclass is None:
            raise ImportError("pyjnius is not available: not on Android")
        self._autoclass = autoclass
        if context is None:  # the p4a service, or else the activity
            service = autoclass("org.kivy.android.PythonService").mService
            context = service or autoclass("org.kivy.android.PythonActivity").mActivity
        self._context = context
        context_class = autoclass("android.content.Context")
        self._manager = context.getSystemService(context_class.NOTIFICATION_SERVICE)
        if autoclass("android.os.Build$VERSION").SDK_INT >= 26:
            channel_class = autoclass("android.app.NotificationChannel")
            importance = autoclass("android.app.NotificationManager").IMPORTANCE_HIGH
            self._manager.createNotificationChannel(
                channel_class(CHANNEL_ID, CHANNEL_NAME, importance)
            )

    def notify(self, alert: Alert) -> None:
        builder_class = self._autoclass("android.app.Notification$Builder")
        builder = builder_class(self._context, CHANNEL_ID)
        icon = self._context.getApplicationInfo().icon
        builder.setSmallIcon(icon)
        builder.setContentTitle(alert.title)
        builder.setContentText(alert.text[:PREVIEW_CHARS])
        builder.setAutoCancel(True)
        intent = self._context.getPackageManager().getLaunchIntentForPackage(
            self._context.getPackageName()
        )
        if intent is not None:
            pending = self._autoclass("android.app.PendingIntent")
            builder.setContentIntent(
                pending.getActivity(self._context, 0, intent, pending.FLAG_IMMUTABLE)
            )
        self._manager.notify(zlib.crc32(alert.conv_id.encode()) & 0x7FFFFFFF, builder.build())


def platform_notifier() -> Notifier:
    """Android's notifier on a phone (pyjnius present), the log elsewhere."""
    try:
        return AndroidNotifier()
    except ImportError:
        return LogNotifier()
