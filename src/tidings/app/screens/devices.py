"""Settings, "Your devices": every device of this account (name, when it was linked and last
seen), and removing one after a confirmation (`Client.remove_device`: its connection closes
and it can no longer read new messages).

The list comes from `Client.devices()` as `DeviceInfo(device_id, name, created_at, last_seen,
current)`; a client core without it shows this device only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app import timefmt
from tidings.app.message_menu import ChoiceSheet
from tidings.app.screens.base import AppScreen, running_app


def seen_text(device: Any) -> str:
    linked = f"linked {timefmt.list_stamp(int(device.created_at))}"
    last_seen = getattr(device, "last_seen", None)
    if getattr(device, "current", False):
        return f"{linked} \u00b7 this device"
    if last_seen is None:
        return f"{linked} \u00b7 never connected"
    return f"{linked} \u00b7 last seen {timefmt.list_stamp(int(last_seen))}"


class DeviceRow(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    device_id = NumericProperty(0)
    name = StringProperty("")
    detail = StringProperty("")
    current = BooleanProperty(False)

    def remove(self) -> None:
        screen = running_app().screen("devices")
        if isinstance(screen, DevicesScreen):
            screen.confirm_remove(int(self.device_id), self.name)


class DevicesScreen(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.confirmation: ChoiceSheet | None = None

    def on_shown(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.error = ""
        listing = getattr(self.client, "devices", None)
        if listing is None:  # a core without the device list: this device only
            self._show([])
            return
        self.busy = True
        self.tidings.tasks.spawn(listing(), on_done=self._show, on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.error = getattr(exc, "message", "") or str(exc)

    def _show(self, devices: Sequence[Any]) -> None:
        self.busy = False
        box = self.ids.devices
        box.clear_widgets()
        mine = self.client.account.device_id
        if not devices:
            box.add_widget(
                DeviceRow(device_id=mine, name=f"Device {mine}", detail="this device", current=True)
            )
            return
        for device in sorted(devices, key=lambda d: int(d.device_id)):
            current = bool(getattr(device, "current", int(device.device_id) == mine))
            box.add_widget(
                DeviceRow(
                    device_id=int(device.device_id),
                    name=str(device.name) or f"Device {device.device_id}",
                    detail=seen_text(device),
                    current=current,
                )
            )

    def row(self, name: str) -> DeviceRow | None:
        for child in self.ids.devices.children:
            if isinstance(child, DeviceRow) and child.name == name:
                return child
        return None

    def confirm_remove(self, device_id: int, name: str) -> None:
        self.confirmation = ChoiceSheet(
            f"Remove \u201c{name}\u201d?",
            "It is signed out at once and cannot read new messages. To use it again, link it anew.",
            [("Remove device", lambda: self.remove(device_id, name), True)],
        )
        self.confirmation.open()

    def remove(self, device_id: int, name: str) -> None:
        def removed(_result: Any) -> None:
            self.tidings.notify(f"\u201c{name}\u201d was removed")
            self.reload()

        self.tidings.tasks.spawn(
            self.client.remove_device(device_id), on_done=removed, on_error=self._failed
        )
