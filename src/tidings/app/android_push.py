"""The Android side of :class:`tidings.app.push_setup.PushBridge`: thin pyjnius calls into
``org.tidings.push.PushRegistration`` (android/src) and p4a's ``android.permissions``.

No decisions here (they are push_setup's, tested on the desktop). ``make android-check``
(tools/android_push.py) checks that every ``PushRegistration`` method called below is declared
``public static`` in the Java source; only a device runs it.
"""

from __future__ import annotations

from typing import Any

from tidings.app.push_setup import PushTarget

#: the Java helper (android/src/org/tidings/push/PushRegistration.java)
HELPER = "org.tidings.push.PushRegistration"
#: Android 13: notifications need the runtime permission
POST_NOTIFICATIONS_API = 33


class AndroidPushBridge:
    """Push registration through the Java helper, in the app's activity."""

    def __init__(self) -> None:
        try:  # pyjnius: on Android only
            from jnius import autoclass  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise ImportError("pyjnius is not available: not on Android") from exc
        self._helper: Any = autoclass(HELPER)
        self._context: Any = autoclass("org.kivy.android.PythonActivity").mActivity
        self._sdk = int(autoclass("android.os.Build$VERSION").SDK_INT)

    def request_notification_permission(self) -> None:
        if self._sdk < POST_NOTIFICATIONS_API:
            return  # granted at install
        try:  # p4a's module, in the APK only
            from android.permissions import (  # type: ignore[import-not-found, unused-ignore]
                Permission,
                check_permission,
                request_permissions,
            )
        except ImportError:
            return
        if not check_permission(Permission.POST_NOTIFICATIONS):
            request_permissions([Permission.POST_NOTIFICATIONS])

    def fcm_available(self) -> bool:
        return bool(self._helper.fcmAvailable(self._context))

    def distributors(self) -> list[str]:
        text = self._helper.distributors(self._context) or ""
        return [name for name in str(text).split("\n") if name]

    def saved_distributor(self) -> str:
        return str(self._helper.savedDistributor(self._context) or "")

    def start_fcm(self) -> None:
        self._helper.requestFcmToken()

    def fcm_token(self) -> str | None:
        token = self._helper.fcmToken()
        return str(token) if token else None

    def start_unifiedpush(self, distributor: str, vapid: str) -> None:
        self._helper.registerUnifiedPush(self._context, distributor, vapid)

    def unifiedpush_target(self) -> PushTarget | None:
        url = self._helper.endpointUrl()
        if not url:
            return None
        p256dh = str(self._helper.endpointP256dh() or "")
        auth = str(self._helper.endpointAuth() or "")
        return PushTarget("webpush", str(url), p256dh, auth)
