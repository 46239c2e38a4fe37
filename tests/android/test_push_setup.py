"""Push registration at the app's start, on the desktop: which service is tried, when the
server is told (new profile, new server, new token or endpoint), and the local notifications'
Android sink. The pyjnius side is a fake here; tools/android_push.py checks its Java names."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tidings.app import local_notify, push_setup
from tidings.app.push_setup import Method, PushTarget, ensure_registered, plan
from tidings.client.errors import ClientError

NTFY = "io.heckel.ntfy"
OTHER = "org.example.distributor"


class FakeBridge:
    """A phone: whether Firebase is there, the distributors, and what each service answers
    (None: never answers)."""

    def __init__(
        self,
        *,
        fcm: bool = True,
        token: str | None = "tok-1",
        distributors: list[str] | None = None,
        saved: str = "",
        endpoint: PushTarget | None = None,
    ) -> None:
        self.fcm, self.token, self.saved, self.endpoint = fcm, token, saved, endpoint
        self._distributors = distributors or []
        self.calls: list[tuple[Any, ...]] = []
        self._fcm_started = self._up_started = False

    def request_notification_permission(self) -> None:
        self.calls.append(("permission",))

    def fcm_available(self) -> bool:
        return self.fcm

    def distributors(self) -> list[str]:
        return self._distributors

    def saved_distributor(self) -> str:
        return self.saved

    def start_fcm(self) -> None:
        self.calls.append(("fcm",))
        self._fcm_started = True

    def fcm_token(self) -> str | None:
        return self.token if self._fcm_started else None

    def start_unifiedpush(self, distributor: str, vapid: str) -> None:
        self.calls.append(("unifiedpush", distributor, vapid))
        self._up_started = True

    def unifiedpush_target(self) -> PushTarget | None:
        return self.endpoint if self._up_started else None


class FakeClient:
    def __init__(self, server: str = "https://chat.example", vapid: str = "BVAPID") -> None:
        self.account = SimpleNamespace(server_url=server, account_id="acc-1", device_id=1)
        self.vapid = vapid
        self.registered: list[tuple[str, str, str, str]] = []

    async def vapid_key(self) -> str:
        return self.vapid

    async def register_push(
        self, platform: str, token: str, *, p256dh: str = "", auth: str = ""
    ) -> None:
        self.registered.append((platform, token, p256dh, auth))


async def _no_wait(_: float) -> None:
    return None


async def _run(client: FakeClient, bridge: FakeBridge, profile: Path) -> str:
    return await ensure_registered(client, bridge, profile, wait_s=1.0, sleep=_no_wait)  # type: ignore[arg-type]


def test_plan_prefers_the_chosen_distributor_then_fcm_then_any_distributor() -> None:
    assert plan(True, [NTFY], NTFY) == [Method("unifiedpush", NTFY), Method("fcm")]
    assert plan(True, [NTFY], "") == [Method("fcm"), Method("unifiedpush", NTFY)]
    assert plan(False, [OTHER, NTFY], "") == [Method("unifiedpush", OTHER)]
    assert plan(False, [OTHER], NTFY) == [Method("unifiedpush", OTHER)]  # uninstalled
    assert plan(False, [], "") == []


async def test_fcm_registers_once_then_only_when_something_changed(tmp_path: Path) -> None:
    client, bridge = FakeClient(), FakeBridge()
    assert await _run(client, bridge, tmp_path) == "registered"
    assert client.registered == [("fcm", "tok-1", "", "")]
    assert bridge.calls[0] == ("permission",)  # asked first, every start
    assert await _run(client, FakeBridge(), tmp_path) == "unchanged"
    assert len(client.registered) == 1
    # the token changed
    assert await _run(client, FakeBridge(token="tok-2"), tmp_path) == "registered"
    # the same token, but the profile now talks to another server
    moved = FakeClient(server="https://other.example")
    assert await _run(moved, FakeBridge(token="tok-2"), tmp_path) == "registered"
    assert moved.registered == [("fcm", "tok-2", "", "")]


async def test_unifiedpush_gets_the_vapid_key_and_sends_the_endpoint_keys(tmp_path: Path) -> None:
    endpoint = PushTarget("webpush", "https://ntfy.example/up123", "p256", "auth")
    client = FakeClient()
    bridge = FakeBridge(fcm=False, distributors=[NTFY], endpoint=endpoint)
    assert await _run(client, bridge, tmp_path) == "registered"
    assert ("unifiedpush", NTFY, "BVAPID") in bridge.calls
    assert client.registered == [("webpush", "https://ntfy.example/up123", "p256", "auth")]
    rotated = PushTarget("webpush", "https://ntfy.example/up123", "p256-new", "auth")
    bridge = FakeBridge(fcm=False, distributors=[NTFY], saved=NTFY, endpoint=rotated)
    assert await _run(client, bridge, tmp_path) == "registered"  # new keys, same endpoint


async def test_a_silent_service_falls_through_to_the_next(tmp_path: Path) -> None:
    endpoint = PushTarget("webpush", "https://ntfy.example/x", "k", "a")
    client = FakeClient()
    # Firebase is in the APK but the phone has no Google services: no token ever comes
    bridge = FakeBridge(token=None, distributors=[NTFY], endpoint=endpoint)
    assert await _run(client, bridge, tmp_path) == "registered"
    assert client.registered[0][0] == "webpush"


async def test_nothing_to_register_with(tmp_path: Path) -> None:
    client = FakeClient(vapid="")  # a server without WebPush rules UnifiedPush out
    bridge = FakeBridge(fcm=False, distributors=[NTFY], endpoint=PushTarget("webpush", "u"))
    assert await _run(client, bridge, tmp_path) == "unavailable"
    assert client.registered == [] and not (tmp_path / push_setup.STATE_FILE).exists()


async def test_a_refused_registration_is_not_remembered(tmp_path: Path) -> None:
    class Refusing(FakeClient):
        async def register_push(self, platform: str, token: str, **_: str) -> None:
            raise ClientError("bad_frame", "no FCM on this server")

    with pytest.raises(ClientError):
        await _run(Refusing(), FakeBridge(), tmp_path)
    assert push_setup.load_state(tmp_path) is None
    (tmp_path / push_setup.STATE_FILE).write_text("not json")
    assert push_setup.load_state(tmp_path) is None


async def test_the_start_hook_does_nothing_on_the_desktop(tmp_path: Path) -> None:
    client = FakeClient()
    await push_setup.register_on_android(client, tmp_path)  # type: ignore[arg-type]
    assert client.registered == []


async def test_the_start_hook_never_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(push_setup, "on_android", lambda: True)  # but no pyjnius here
    await push_setup.register_on_android(FakeClient(), tmp_path)  # type: ignore[arg-type]


def test_local_notifications_use_the_android_notifier_on_android(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[Any] = []

    class FakeNotifier:
        def notify(self, alert: Any) -> None:
            posted.append(alert)

    import kivy.utils

    from tidings.app import notifier

    monkeypatch.setattr(notifier, "AndroidNotifier", FakeNotifier)
    monkeypatch.setattr(kivy.utils, "platform", "android")
    local = local_notify.LocalNotifier(focused=lambda: False)
    assert isinstance(local.sink, local_notify.AndroidSink)
    message = SimpleNamespace(conv_id="c1", sender_name="bob", body="hi there")
    assert local.on_notify(SimpleNamespace(message=message, title="bob", mentioned=False))  # type: ignore[arg-type]
    assert posted == [notifier.Alert("c1", "bob", "hi there")]
    monkeypatch.setattr(kivy.utils, "platform", "linux")
    assert local_notify.LocalNotifier().sink is local_notify.plyer_sink
