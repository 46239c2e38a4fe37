"""The full-screen photo viewer: the picture on black, fitted to the window, its caption, and
a close button (Escape and the back button close it too, as any ModalView)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.modalview import ModalView

from tidings.app.media_bubbles import image_texture


class ImageViewer(ModalView):  # type: ignore[misc]  # kivy is untyped
    """One picture, full screen (kv/media.kv)."""

    texture = ObjectProperty(None, allownone=True)
    caption = StringProperty("")

    def __init__(self, path: Path, caption: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.texture = image_texture(path)
        self.caption = " ".join(caption.split())


def open_viewer(path: Path, caption: str = "") -> ImageViewer:
    """Show the picture at ``path`` full screen; the viewer (already open)."""
    viewer = ImageViewer(path, caption)
    viewer.open(animation=False)
    return viewer
