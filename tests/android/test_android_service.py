"""The p4a push service on the desktop: a wake-up syncs the profile and posts the alerts; a
registration reaches the server; an app holding the profile makes it a no-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.conftest import server, server_factory, store_env  # noqa: F401

from tidings.app import android_service
from tidings.app.notifier import Alert
from tidings.client import Client


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def test_a_wake_up_syncs_and_notifies(server: Any, tmp_path: Path) -> None:  # noqa: F811
    alice_profile = tmp_path / "alice"
    alice = await Client.create_account(alice_profile, server.url, "alice")
    await alice.close()
    bob = await Client.create_account(tmp_path / "bob", server.url, "bob")
    await bob.start()
    await bob.wait_synced(30)
    try:
        chat = await bob.open_direct("alice")
        sent = await bob.send_text(chat.id, "dinner at eight?")
        await bob.wait_synced(30)
        sink = Recorder()
        register = '{"kind": "register", "platform": "log", "token": "device-token"}'
        outcome = await android_service.run(alice_profile, register, sink)
        assert outcome.result == "registered"

        outcome = await android_service.run(alice_profile, '{"kind": "wake"}', sink)
        assert outcome.result == "synced" and outcome.complete
        assert sink.alerts == [Alert(chat.id, "bob", "dinner at eight?", False)]
        again = await android_service.run(alice_profile, '{"kind": "wake"}', sink)
        assert again.alerts == ()  # acked: nothing new

        holder = await Client.open(alice_profile)  # the app is running: it has the messages
        try:
            assert (await android_service.run(alice_profile, "{}", sink)).result == "bad_argument"
        finally:
            await holder.close()
        assert (await bob.message(sent.id)) is not None
        registration = None
        reopened = await Client.open(alice_profile)
        try:
            registration = await reopened.push_registration()
        finally:
            await reopened.close()
        assert registration is not None and registration.token == "device-token"
    finally:
        await bob.close()


async def test_no_profile(tmp_path: Path) -> None:
    outcome = await android_service.run(tmp_path / "none", '{"kind": "wake"}', Recorder())
    assert outcome.result == "no_profile"
