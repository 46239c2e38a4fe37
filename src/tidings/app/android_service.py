"""The push service: python-for-android runs this file in a process of its own (``services =
Sync:...`` in buildozer.spec) when a push receiver (android/src/org/tidings/push) starts it.

Its argument (``PYTHON_SERVICE_ARGUMENT``) is a small JSON object:

* ``{"kind": "wake", "source": "fcm" | "unifiedpush"}``: a push arrived: take the profile,
  run :meth:`Client.sync_once` (connect, replay, store, ack, send the outbox, close) and post
  a notification for each message that should alert (the client's ``Notify`` decisions);
* ``{"kind": "register", "platform": "fcm", "token": ...}`` or ``{"kind": "register",
  "platform": "webpush", "token": <endpoint>, "p256dh": ..., "auth": ...}`` (UnifiedPush): a new
  push token or endpoint: tell the server (:meth:`Client.register_push`).

The profile is the app's (``$ANDROID_PRIVATE/profile``). If the app holds it (it is in the
foreground and online), there is nothing to do: it receives the messages itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings.app.notifier import Alert, Notifier, autoclass, platform_notifier
from tidings.client import Client, ClientError
from tidings.client.errors import ProfileInUse

log = logging.getLogger(__name__)

#: seconds one wake-up may take (Android gives a high-priority FCM message about 20 s of
#: unrestricted work; a started service is not stopped sooner)
BUDGET = 20.0


@dataclass(frozen=True)
class Outcome:
    """What one run of the service did."""

    #: "synced", "registered", "app_running", "no_profile", "failed" or "bad_argument"
    result: str
    alerts: tuple[Alert, ...] = ()
    complete: bool = False


def parse(argument: str) -> dict[str, Any] | None:
    try:
        value = json.loads(argument or '{"kind": "wake"}')
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("kind") in ("wake", "register") else None


async def run(profile: Path, argument: str, notifier: Notifier, budget: float = BUDGET) -> Outcome:
    """Handle one start of the service (see the module docstring)."""
    wake = parse(argument)
    if wake is None:
        log.warning("push service: ignoring an argument it does not understand")
        return Outcome("bad_argument")
    try:
        client = await Client.open(profile)
    except ProfileInUse:
        return Outcome("app_running")
    except ClientError as exc:
        log.warning("push service: cannot open the profile: %s", exc.code)
        return Outcome("no_profile")
    try:
        if wake["kind"] == "register":
            await client.register_push(
                str(wake.get("platform", "")),
                str(wake.get("token", "")),
                p256dh=str(wake.get("p256dh", "")),
                auth=str(wake.get("auth", "")),
            )
            return Outcome("registered")
        result = await client.sync_once(budget)
        alerts = []
        for message in result.notify:
            conversation = await client.conversation(message.conv_id)
            text = (
                message.body
                if conversation.kind == "direct"
                else (f"{message.sender_name}: {message.body}")
            )
            alert = Alert(message.conv_id, conversation.title, text, message.mentions_me)
            notifier.notify(alert)
            alerts.append(alert)
        return Outcome("synced", tuple(alerts), result.complete)
    except ClientError as exc:
        log.warning("push service: %s", exc.code)
        return Outcome("failed")
    finally:
        await client.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    profile = Path(os.environ.get("ANDROID_PRIVATE", ".")) / "profile"
    argument = os.environ.get("PYTHON_SERVICE_ARGUMENT", "")
    outcome = asyncio.run(run(profile, argument, platform_notifier()))
    log.info("push service: %s, %d notification(s)", outcome.result, len(outcome.alerts))
    if autoclass is not None:  # end the service (and its process) now that the work is done
        autoclass("org.kivy.android.PythonService").mService.stopSelf()


if __name__ == "__main__":
    main()
