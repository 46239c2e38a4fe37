"""Push registration at start (Android): which push service to use, when to tell the server.

On Android the app, once its client is attached, asks for the notification permission
(Android 13+), obtains a push target from the platform and registers it with
:meth:`Client.register_push` when it differs from what it last registered. Everything that
decides is here and pure (tested on the desktop: tests/android/test_push_setup.py); the calls
into Java are :class:`PushBridge`'s, implemented by :mod:`tidings.app.android_push` over
pyjnius. On the desktop :func:`register_on_android` returns at once.

* **Which service** (:func:`plan`): the UnifiedPush distributor the user picked, if it is still
  installed; else FCM when the APK has Firebase (built with a ``google-services.json``); else the
  first UnifiedPush distributor installed. When one gives no target in time (no Google services
  on the phone, a distributor that does not answer), the next is tried.
  UnifiedPush needs the server's VAPID key (:meth:`Client.vapid_key`); a server without WebPush
  (empty key) rules it out.
* **When to register** (:func:`needs_registration`): when nothing was registered from this
  profile yet, when the server, account or device differ from the last registration (a profile
  made again), or when the token, endpoint or its keys changed. The last registration is kept in
  ``<profile>/push.json``. A token that changes while the app runs (FCM's ``onNewToken``, a
  new UnifiedPush endpoint) reaches the push service, which leaves it while the app holds the
  profile; the app registers it at its next start, as the platform then reports the new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from tidings.client import Client, ClientError

log = logging.getLogger(__name__)

#: seconds to wait for a token or an endpoint from one service before trying the next
OBTAIN_WAIT_S = 30.0
POLL_INTERVAL = 0.25
STATE_FILE = "push.json"

T = TypeVar("T")


@dataclass(frozen=True)
class PushTarget:
    """What the server pushes to: ``fcm`` and a token, or ``webpush`` and an endpoint with its
    keys (UnifiedPush)."""

    platform: str
    token: str
    p256dh: str = ""
    auth: str = ""


@dataclass(frozen=True)
class Method:
    """One way to get a target: ``fcm``, or ``unifiedpush`` through ``distributor``."""

    service: str
    distributor: str = ""


class PushBridge(Protocol):
    """The platform's side (Android: :class:`tidings.app.android_push.AndroidPushBridge`)."""

    def request_notification_permission(self) -> None: ...
    def fcm_available(self) -> bool: ...
    def distributors(self) -> list[str]: ...
    def saved_distributor(self) -> str: ...
    def start_fcm(self) -> None: ...
    def fcm_token(self) -> str | None: ...
    def start_unifiedpush(self, distributor: str, vapid: str) -> None: ...
    def unifiedpush_target(self) -> PushTarget | None: ...


def plan(fcm_available: bool, distributors: Sequence[str], saved: str) -> list[Method]:
    """The services to try, in order (see the module docstring)."""
    methods = []
    if saved and saved in distributors:
        methods.append(Method("unifiedpush", saved))
    if fcm_available:
        methods.append(Method("fcm"))
    others = [d for d in distributors if d != saved]
    if others:
        methods.append(Method("unifiedpush", others[0]))
    return methods


def server_key(client: Client) -> str:
    """Who the registration is for: the server, the account and the device."""
    account = client.account
    return f"{account.server_url} {account.account_id} {account.device_id}"


def needs_registration(saved: dict[str, str] | None, key: str, target: PushTarget) -> bool:
    """Whether ``target`` must be sent to the server, given the last registration ``saved``."""
    return saved != {"server": key, **asdict(target)}


def load_state(profile: Path) -> dict[str, str] | None:
    try:
        value = json.loads((profile / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return value


def save_state(profile: Path, key: str, target: PushTarget) -> None:
    path = profile / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"server": key, **asdict(target)}))
    tmp.replace(path)


async def _poll(
    read: Callable[[], T | None],
    wait_s: float,
    sleep: Callable[[float], Awaitable[object]],
) -> T | None:
    for _ in range(math.ceil(wait_s / POLL_INTERVAL)):
        value = read()
        if value is not None:
            return value
        await sleep(POLL_INTERVAL)
    return read()


async def obtain(
    bridge: PushBridge,
    method: Method,
    vapid: Callable[[], Awaitable[str]],
    wait_s: float = OBTAIN_WAIT_S,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> PushTarget | None:
    """The target ``method`` gives, or None (unavailable, or no answer within ``wait_s``)."""
    if method.service == "fcm":
        bridge.start_fcm()
        token = await _poll(bridge.fcm_token, wait_s, sleep)
        return PushTarget("fcm", token) if token else None
    key = await vapid()
    if not key:
        log.info("push: the server has no WebPush, so no UnifiedPush")
        return None
    bridge.start_unifiedpush(method.distributor, key)
    return await _poll(bridge.unifiedpush_target, wait_s, sleep)


async def ensure_registered(
    client: Client,
    bridge: PushBridge,
    profile: Path,
    wait_s: float = OBTAIN_WAIT_S,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> str:
    """Ask for the permission, find a target and register it if needed. Returns what happened:
    ``registered``, ``unchanged`` or ``unavailable``."""
    bridge.request_notification_permission()
    methods = plan(bridge.fcm_available(), bridge.distributors(), bridge.saved_distributor())
    key = server_key(client)
    for method in methods:
        target = await obtain(bridge, method, client.vapid_key, wait_s, sleep)
        if target is None:
            log.info("push: %s gave no target", method.service)
            continue
        if not needs_registration(load_state(profile), key, target):
            return "unchanged"
        await client.register_push(
            target.platform, target.token, p256dh=target.p256dh, auth=target.auth
        )
        save_state(profile, key, target)
        log.info("push: registered %s", target.platform)
        return "registered"
    log.warning("push: no push service on this phone (no Google services, no distributor)")
    return "unavailable"


def on_android() -> bool:
    from kivy.utils import platform

    return bool(platform == "android")


async def register_on_android(client: Client, profile: Path) -> None:
    """The app's start hook: on Android, :func:`ensure_registered`; elsewhere nothing. Never
    raises: without push the app still works while it is open."""
    if not on_android():
        return
    try:
        from tidings.app.android_push import AndroidPushBridge

        await ensure_registered(client, AndroidPushBridge(), profile)
    except ClientError as exc:
        log.warning("push registration failed: %s", exc.code)
    except Exception:
        log.exception("push registration failed")
