"""What a message's attachments look like inside its bubble (``MessageRow`` adds a
:class:`MediaBlock` above the caption).

- **Photos** show their BlurHash placeholder at once (decoded to a small texture, blurred
  further by the GPU's linear filtering), then the picture once it is in the media cache — own
  photos at once, small ones from others as soon as the core has downloaded them, bigger ones
  after a tap. A tap on a shown picture opens the full-screen viewer
  (:mod:`tidings.app.screens.viewer`).
- **Voice notes**: play/pause, the 64-bar waveform (the played part in full colour), position
  and duration; playing downloads the note first (:mod:`tidings.app.voice`).
- **Files**: name and size; a tap downloads.
- **Progress**: ``TransferProgress`` events move a bar (photos) or a percentage (the others);
  a failed upload says so and a tap retries it (``Client.retry``).

A block outlives its row's rebuilds (a status change re-lays the bubble out): blocks are kept
per message id while they are on screen, so a playing voice note keeps playing.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.graphics import Color, Rectangle
from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from tidings.app.screens.base import running_app
from tidings.app.theme import SYMBOL_FONT
from tidings.app.voice import VoicePlayer
from tidings.app.widgets import IconButton
from tidings.client.types import Attachment, Message, MessageStatus, TransferProgress

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen

log = logging.getLogger(__name__)

#: the widest a photo is shown in a bubble, and the tallest
IMAGE_MAX_WIDTH = 240
IMAGE_MAX_HEIGHT = 320
#: bars of a voice note's waveform (the pointer carries 64 levels)
BARS = 64

#: blocks on screen, by message id (progress events and row rebuilds find them here)
_blocks: weakref.WeakValueDictionary[uuid.UUID, MediaBlock] = weakref.WeakValueDictionary()


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / 1024**2:.1f} MB"


def clock(seconds: float) -> str:
    whole = max(0, int(seconds + 0.5))
    return f"{whole // 60}:{whole % 60:02d}"


def blurhash_texture(hash_: str, width: int, height: int) -> Texture | None:
    """The placeholder as a small texture of the picture's aspect (None if it does not
    decode: a peer may send anything)."""
    try:
        from tidings.client.media import blurhash

        across = 32
        down = max(4, min(64, round(across * height / max(1, width))))
        image = blurhash.decode(hash_, across, down).convert("RGBA")
    except Exception:
        log.info("a BlurHash did not decode", exc_info=True)
        return None
    texture = Texture.create(size=(across, down), colorfmt="rgba")
    texture.blit_buffer(image.tobytes(), colorfmt="rgba", bufferfmt="ubyte")
    texture.flip_vertical()
    texture.mag_filter = "linear"
    texture.min_filter = "linear"
    return texture


def image_texture(path: Path) -> Texture | None:
    try:
        from kivy.core.image import Image as CoreImage

        return CoreImage(str(path)).texture
    except Exception:
        log.info("cannot show %s", path, exc_info=True)
        return None


def media_block(message: Message, chat: ChatScreen, width: float) -> MediaBlock:
    """The block of ``message``'s attachments, ``width`` wide at most (the same widget again
    while it is on screen, updated)."""
    block = _blocks.get(message.id)
    if (
        block is not None
        and block.max_width == width
        and len(block.tiles) == len(message.attachments)
    ):
        if block.parent is not None:
            block.parent.remove_widget(block)
        block.update(message)
        return block
    if block is not None:
        block.release()
    block = MediaBlock(message, chat, width)
    _blocks[message.id] = block
    return block


def on_progress(event: TransferProgress) -> None:
    """An upload or download moved: the bar of that attachment follows."""
    block = _blocks.get(event.message_id)
    if block is not None:
        block.progress(event)


class MediaBlock(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """Every attachment of one message, one tile each."""

    def __init__(self, message: Message, chat: ChatScreen, width: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        self.chat = chat
        self.max_width = width
        self.tiles: list[Any] = []
        for index, attachment in enumerate(message.attachments):
            tile = _tile_for(attachment, self, index, width)
            self.tiles.append(tile)
            self.add_widget(tile)
        self.update(message)

    def update(self, message: Message) -> None:
        self.message = message
        for tile, attachment in zip(self.tiles, message.attachments, strict=False):
            tile.show(attachment, message)
        self.width = max((t.width for t in self.tiles), default=dp(120))

    def progress(self, event: TransferProgress) -> None:
        for tile, attachment in zip(self.tiles, self.message.attachments, strict=False):
            if attachment.id == event.attachment_id:
                tile.moved(event.done / event.total if event.total else 1.0, event.direction)

    def release(self) -> None:
        for tile in self.tiles:
            if isinstance(tile, VoiceTile):
                tile.player.release()

    # what the tiles ask for
    def download(self, index: int) -> None:
        client = running_app().require_client()
        running_app().tasks.spawn(client.download(self.message.id, index=index))

    def retry(self) -> None:
        if self.message.status is MessageStatus.FAILED:
            self.chat.retry(self.message)


def _tile_for(attachment: Attachment, block: MediaBlock, index: int, width: float) -> Widget:
    if attachment.kind in ("image", "video"):
        return ImageTile(block, index, attachment, width)
    if attachment.kind == "voice":
        return VoiceTile(block, index, attachment, width)
    return FileTile(block, index, width)


def _status_note(attachment: Attachment, message: Message) -> str:
    """What to say over a tile that has no picture to show yet ('' when nothing)."""
    if attachment.state == "failed" or message.status is MessageStatus.FAILED:
        return "Not sent \u2014 tap to retry"
    if attachment.state == "preparing":
        return "Preparing\u2026"
    return ""


class ImageTile(ButtonBehavior, Widget):  # type: ignore[misc]
    """A photo (or a video's first frame): placeholder, then the picture."""

    texture = ObjectProperty(None, allownone=True)
    #: 0..1 while a transfer moves, -1 otherwise
    progress = NumericProperty(-1.0)
    note = StringProperty("")
    #: what is shown: "empty", "blurhash" or "image" (every change is kept in ``history``)
    shown = StringProperty("empty")

    def __init__(
        self, block: MediaBlock, index: int, attachment: Attachment, width: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.block = block
        self.index = index
        self.attachment = attachment
        self.history: list[str] = []
        self.max_width = width
        self._path: Path | None = None
        self._fit(attachment)

    def _fit(self, attachment: Attachment) -> None:
        """As wide as the bubble allows (at most IMAGE_MAX_WIDTH), in the picture's aspect
        (4:3 until it is known: an own photo is still being prepared)."""
        w, h = attachment.width or 4, attachment.height or 3
        shown_w = min(float(self.max_width), float(dp(IMAGE_MAX_WIDTH)))
        shown_h = shown_w * h / w
        if shown_h > dp(IMAGE_MAX_HEIGHT):
            shown_h = float(dp(IMAGE_MAX_HEIGHT))
            shown_w = max(float(dp(80)), shown_h * w / h)
        self.size = (shown_w, max(float(dp(80)), shown_h))

    def show(self, attachment: Attachment, message: Message) -> None:
        self.attachment = attachment
        self._fit(attachment)
        path = attachment.path
        if path is not None and path != self._path:
            texture = image_texture(path)
            if texture is not None:
                self._path = path
                self._set(texture, "image")
        if self.shown == "empty" and attachment.blurhash:
            texture = blurhash_texture(
                attachment.blurhash, attachment.width or 4, attachment.height or 3
            )
            if texture is not None:
                self._set(texture, "blurhash")
        note = _status_note(attachment, message)
        if not note and self.shown != "image" and attachment.state == "remote":
            note = f"[font={SYMBOL_FONT}]\u2193[/font] {human_size(attachment.size)}"
        self.note = note
        settled = attachment.state in ("ready", "uploaded", "failed") or self.shown == "image"
        if settled and attachment.state != "uploading":
            self.progress = -1.0

    def _set(self, texture: Texture, what: str) -> None:
        self.texture = texture
        self.shown = what
        self.history.append(what)

    def moved(self, fraction: float, _direction: str) -> None:
        self.progress = -1.0 if fraction >= 1 else fraction

    def on_release(self) -> None:
        if self.block.message.status is MessageStatus.FAILED:
            self.block.retry()
        elif self.shown == "image" and self._path is not None:
            from tidings.app.screens.viewer import open_viewer

            open_viewer(self._path, self.block.message.body)
        elif self.attachment.state == "remote":
            self.progress = 0.0
            self.block.download(self.index)


class Waveform(Widget):  # type: ignore[misc]
    """64 bars, the played part in full colour."""

    levels = ListProperty([])
    played = NumericProperty(0.0)
    ink = ColorProperty([0, 0, 0, 1])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(
            levels=self._draw, played=self._draw, ink=self._draw, size=self._draw, pos=self._draw
        )

    def _draw(self, *_args: Any) -> None:
        self.canvas.clear()
        levels = list(self.levels) or [0] * BARS
        step = self.width / len(levels)
        bar = max(1.0, step * 0.6)
        with self.canvas:
            for i, level in enumerate(levels):
                done = (i + 0.5) / len(levels) <= self.played
                Color(*self.ink[:3], 1.0 if done else 0.38)
                height = max(float(dp(2)), self.height * level / 255)
                Rectangle(pos=(self.x + i * step, self.center_y - height / 2), size=(bar, height))


class VoiceTile(BoxLayout):  # type: ignore[misc]
    """Play/pause, waveform, position / duration."""

    playing = BooleanProperty(False)
    clock_text = StringProperty("0:00")
    ink = ColorProperty([0, 0, 0, 1])

    def __init__(
        self, block: MediaBlock, index: int, attachment: Attachment, width: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.block = block
        self.index = index
        self.attachment = attachment
        self.width = min(float(width), float(dp(250)))
        self.player = VoicePlayer(attachment.path, attachment.duration_ms)
        self.player.bind(state=self._on_state, position=self._on_position)
        self._wanted = False
        self._note = ""
        self.ids.waveform.levels = list(attachment.waveform or ())

    def show(self, attachment: Attachment, message: Message) -> None:
        self.attachment = attachment
        theme = running_app().theme
        self.ink = theme.bubble_own_text if message.is_own else theme.bubble_other_text
        self.ids.waveform.ink = self.ink
        self.player.set_path(attachment.path)
        self._note = _status_note(attachment, message)
        if self._wanted and attachment.path is not None:
            self._wanted = False
            self.player.play()
        self._on_position(self.player, self.player.position)

    def toggle(self) -> None:
        if self.block.message.status is MessageStatus.FAILED:
            self.block.retry()
            return
        if self.attachment.path is None and self.attachment.state == "remote":
            self._wanted = True  # play once it is here
            self.block.download(self.index)
            self._note = "Loading\u2026"
            self._on_position(self.player, 0)
            return
        self.player.toggle()

    def moved(self, fraction: float, direction: str) -> None:
        if fraction < 1:
            verb = "Sending" if direction == "up" else "Loading"
            self._note = f"{verb} {fraction:.0%}"
        else:
            self._note = ""
        self._on_position(self.player, self.player.position)

    def _on_state(self, _player: Any, state: str) -> None:
        self.playing = state == "playing"

    def _on_position(self, player: Any, position: float) -> None:
        duration = player.duration
        self.ids.waveform.played = position / duration if duration else 0.0
        moving = self.playing or position > 0
        text = f"{clock(position)} / {clock(duration)}" if moving else clock(duration)
        self.clock_text = f"{text}   {self._note}" if self._note else text


class FileTile(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A document: its name and size; a tap downloads it."""

    title = StringProperty("")
    detail = StringProperty("")
    ready = BooleanProperty(False)
    ink = ColorProperty([0, 0, 0, 1])

    def __init__(self, block: MediaBlock, index: int, width: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block = block
        self.index = index
        self.width = min(float(width), float(dp(260)))
        self._state = "remote"

    def show(self, attachment: Attachment, message: Message) -> None:
        theme = running_app().theme
        self.ink = theme.bubble_own_text if message.is_own else theme.bubble_other_text
        self.title = attachment.file_name or attachment.kind
        self.ready = attachment.path is not None
        self._state = attachment.state
        note = _status_note(attachment, message)
        where = "" if not self.ready or message.is_own else "  \u00b7 downloaded"
        self.detail = note or f"{human_size(attachment.size)}{where}"

    def moved(self, fraction: float, direction: str) -> None:
        if fraction < 1:
            verb = "Sending" if direction == "up" else "Downloading"
            self.detail = f"{verb} {fraction:.0%}"

    def on_release(self) -> None:
        if self.block.message.status is MessageStatus.FAILED:
            self.block.retry()
        elif not self.ready and self._state == "remote":
            self.detail = "Downloading\u2026"
            self.block.download(self.index)


class MicButton(IconButton):
    """The composer's voice-note button: a microphone drawn with lines (media.kv)."""
