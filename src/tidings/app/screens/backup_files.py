"""The file chooser of backup export and import: a popup over the screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.popup import Popup


class FilePopup(Popup):  # type: ignore[misc]  # kivy is untyped
    """Pick a file to open, or a folder and a name to save as (its looks: kv/backup.kv)."""

    saving = BooleanProperty(False)
    file_name = StringProperty("")
    error = StringProperty("")
    on_chosen = ObjectProperty(None)

    def choose(self) -> None:
        chooser = self.ids.chooser
        if self.saving:
            name = self.ids.name.text.strip()
            if not name or "/" in name:
                self.error = "Enter a file name."
                return
            path = Path(chooser.path) / name
        else:
            if not chooser.selection:
                self.error = "Choose a file."
                return
            path = Path(chooser.selection[0])
            if not path.is_file():
                self.error = "Choose a file, not a folder."
                return
        self.dismiss()
        if self.on_chosen is not None:
            self.on_chosen(path)


def choose_file(
    title: str,
    *,
    on_chosen: Callable[[Path], None],
    save_as: str | None = None,
    start: Path | None = None,
) -> FilePopup:
    """Open the chooser; ``save_as`` makes it a save dialog with that file name suggested."""
    popup = FilePopup(
        title=title, saving=save_as is not None, file_name=save_as or "", on_chosen=on_chosen
    )
    popup.ids.chooser.path = str(start or Path.home())
    popup.open()
    return popup


def open_popups(root: Any) -> list[FilePopup]:
    """The file popups on screen (for tests)."""
    return [w for w in root.children if isinstance(w, FilePopup)]
