"""Pause and resume on Android (docs/android.md, "Pause and resume").

``on_pause`` runs :meth:`Client.suspend` synchronously: Kivy 2.3.1 freezes the asyncio loop
right after it, so nothing spawned from it would finish. Suspending acks what arrived, closes
the socket cleanly (the server pushes from then on) and lets go of the profile, which the push
service (``tidings.app.android_service``) may then sync. ``on_resume`` takes the profile back;
if the service wrote to it meanwhile, the client is reopened so that its state is current.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tidings.client import Client, ClientError

if TYPE_CHECKING:
    from tidings.app.application import TidingsApp

log = logging.getLogger(__name__)

#: seconds the app waits on resume for a running push service to finish with the profile
RESUME_WAIT = 30.0


def pause(app: TidingsApp) -> None:
    if app.client is not None:
        try:
            app.client.suspend()
        except Exception:  # the freeze comes regardless: the server's idle timeout covers it
            log.exception("suspending the client failed")


async def resume(app: TidingsApp) -> None:
    client = app.client
    if client is None:
        return
    if await client.resume(wait=RESUME_WAIT):
        return
    log.info("the profile changed while paused (push sync): reopening it")
    if app._pump is not None:
        app._pump.cancel()
    await client.close()
    app.client = None
    try:
        reopened = await Client.open(app.profile)
    except ClientError as exc:
        app.show_profile_error(exc)
        return
    await app.attach(reopened)
