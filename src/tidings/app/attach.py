"""The composer's attach and voice buttons: choosing a file and sending it.

Choosing goes through :data:`PICKER`, a hook: on the desktop (and under the tests) it is a
Kivy ``FileChooserListView`` in a popup (:class:`FilePickerPopup`); on Android the app sets
it at start to the system picker (the Storage Access Framework through plyer's
``filechooser``), which hands back a path the same way. Voice notes are recorded with
:data:`RECORDER` where a microphone is available (hold the button); where none is (the desktop,
here), the voice button picks an audio file instead, and it is sent as a voice note (Ogg Opus).

A picked file goes to ``Client.send_file`` (its kind detected by the core) with the composer's
text as its caption; an audio file picked for a voice note to ``Client.send_voice``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.properties import ListProperty, StringProperty
from kivy.uix.popup import Popup

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen

#: called with (title, filters, on_chosen): show a picker, later call on_chosen(path) once
Picker = Callable[[str, list[str], Callable[[Path], None]], Any]
#: called with (chat, on_recorded): record from the microphone, call on_recorded(path)
Recorder = Callable[["ChatScreen", Callable[[Path], None]], Any]

#: audio a voice note may be made from
AUDIO_FILTERS = ["*.ogg", "*.opus", "*.wav", "*.mp3", "*.m4a", "*.aac", "*.flac", "*.webm"]


class FilePickerPopup(Popup):  # type: ignore[misc]  # kivy is untyped
    """Kivy's file chooser in a popup (kv/media.kv); ``choose`` hands the selection on."""

    filters = ListProperty([])
    start_path = StringProperty("")
    action = StringProperty("Send")

    def __init__(
        self, on_chosen: Callable[[Path], None], start: Path | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("start_path", str(start or Path.home()))
        super().__init__(**kwargs)
        self.on_chosen = on_chosen

    def choose(self) -> None:
        selection = self.ids.chooser.selection
        if not selection:
            return
        path = Path(selection[0])
        if not path.is_file():
            return
        self.dismiss()
        self.on_chosen(path)


def desktop_picker(
    title: str, filters: list[str], on_chosen: Callable[[Path], None]
) -> FilePickerPopup:
    popup = FilePickerPopup(on_chosen, title=title, filters=filters)
    popup.open(animation=False)
    return popup


#: the file picker in use (module docstring); Android replaces it at start
PICKER: Picker = desktop_picker
#: the microphone recorder, None where there is none
RECORDER: Recorder | None = None


def attach_file(chat: ChatScreen) -> Any:
    """The attach button: pick a file, send it with the composer's text as its caption."""

    def send(path: Path) -> None:
        composer = chat.ids.composer
        caption = composer.text.strip()
        composer.text = ""
        chat.tidings.tasks.spawn(chat.client.send_file(chat.conv_id, path, caption=caption))

    return PICKER("Send a photo or file", [], send)


def voice_note(chat: ChatScreen) -> Any:
    """The voice button: record where a microphone is, else pick an audio file."""

    def send(path: Path) -> None:
        chat.tidings.tasks.spawn(chat.client.send_voice(chat.conv_id, path))

    if RECORDER is not None:
        return RECORDER(chat, send)
    return PICKER("Send a voice note", AUDIO_FILTERS, send)
