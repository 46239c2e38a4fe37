"""Attachments in the app, against a real server with a second client: a photo sent from the
composer's attach button (upload progress on the bubble), a photo from the other side shown
first as its BlurHash placeholder, then as the picture, then full screen in the viewer; a voice
note with its 64-bar waveform that plays (state and position move, with or without an audio
device); the voice button picking an audio file where there is no microphone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kivy.core.window import Window
from tests.integration.media_kit import exif_photo, tone_wav
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_screen, rows_with

from tidings.app.attach import FilePickerPopup
from tidings.app.harness import AppDriver
from tidings.app.media_bubbles import ImageTile, VoiceTile
from tidings.app.screens.viewer import ImageViewer
from tidings.client.mediaflow import MediaFlow
from tidings.client.types import MessageStatus

pytestmark = [pytest.mark.ui, pytest.mark.timeout(240)]


def on_window(kind: type[Any]) -> list[Any]:
    """Popups and modal views are children of the window, not of the app's root."""
    return [w for w in Window.children if isinstance(w, kind)]


def tile_of(driver: AppDriver, kind: type[Any], message_id: Any) -> Any:
    found = driver.find(kind, lambda t: t.block.message.id == message_id)
    return found[0] if found else None


async def pick(driver: AppDriver, button: Any, path: Path) -> None:
    """Tap ``button`` and choose ``path`` in the file chooser it opens."""
    await driver.tap(button)
    await driver.wait_for(lambda: on_window(FilePickerPopup), what="the file chooser")
    (popup,) = on_window(FilePickerPopup)
    chooser = popup.ids.chooser
    chooser.path = str(path.parent)
    await driver.frames(3)
    chooser.selection = [str(path)]
    await driver.frames(2)
    await driver.tap(popup.ids.send)
    await driver.wait_for(lambda: not on_window(FilePickerPopup), what="the chooser to close")


async def test_photos_and_a_voice_note(
    app: AppFactory,
    peer: PeerFactory,
    shots: Shots,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No automatic download in this test: the placeholder stays until the photo is tapped.
    monkeypatch.setattr(MediaFlow, "on_added", lambda self, ids: None)
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Send me the beach photo?")
    await driver.wait_for(
        lambda: driver.app.screen("chat_list").row(conv.id) is not None, what="bob's chat"
    )
    driver.app.open_chat(conv.id)
    await driver.wait_for(lambda: rows_with(driver, "Send me the beach photo?"), what="the chat")
    chat = chat_screen(driver)

    # --- a photo from the app, with the composer's text as its caption
    photo = exif_photo(tmp_path / "beach.jpg", "UI-MARKER", size=(1600, 1200))
    chat.ids.composer.text = "The beach"
    await pick(driver, chat.ids.attach, photo)
    await driver.wait_for(lambda: rows_with(driver, "The beach"), what="the photo's bubble")
    row = rows_with(driver, "The beach")[0]
    mine = row.message.id
    assert row.own and row.body.text == "The beach"
    tile = tile_of(driver, ImageTile, mine)
    assert tile is not None
    await driver.wait_for(
        lambda: rows_with(driver, "The beach")[0].message.status is not MessageStatus.SENDING,
        within=60,
        what="the photo sent",
    )
    tile = tile_of(driver, ImageTile, mine)
    assert tile.shown == "image" and tile.progress == -1.0  # own photo: shown from the cache
    assert tile.width <= tile.height  # upright: the sideways 1600x1200 photo is portrait
    got = await bob.message(mine)
    assert got is not None and got.attachments[0].kind == "image"
    assert got.body == "The beach"
    shots(driver, "sent-photo")

    # --- a photo from bob: placeholder first, the picture after a tap, then the viewer
    theirs = await bob.send_file(conv.id, exif_photo(tmp_path / "hills.jpg", "M", (1200, 900)))
    await driver.wait_for(lambda: tile_of(driver, ImageTile, theirs.id), what="bob's photo")
    tile = tile_of(driver, ImageTile, theirs.id)
    assert tile.shown == "blurhash" and tile.texture is not None
    assert tile.texture.size[0] == 32  # the small decoded placeholder, stretched
    assert "\u2193" in tile.note and "KB" in tile.note  # tap to download, with the size
    shots(driver, "blurhash")
    await driver.tap(tile)
    await driver.wait_for(
        lambda: tile_of(driver, ImageTile, theirs.id).shown == "image", what="the picture"
    )
    tile = tile_of(driver, ImageTile, theirs.id)
    assert tile.history == ["blurhash", "image"]
    assert tile.texture.size == (900, 1200)  # turned upright
    shots(driver, "downloaded")
    await driver.tap(tile)
    await driver.wait_for(lambda: on_window(ImageViewer), what="the viewer")
    (viewer,) = on_window(ImageViewer)
    assert viewer.texture is not None and viewer.texture.size == (900, 1200)
    await driver.frames(3)
    shots(driver, "viewer")
    await driver.tap(viewer.ids.close)
    await driver.wait_for(lambda: not on_window(ImageViewer), what="the viewer to close")

    # --- a voice note from bob: waveform, play (downloads first), position moves, pause
    note = await bob.send_voice(conv.id, tone_wav(tmp_path / "note.wav", seconds=4.0))
    await driver.wait_for(lambda: tile_of(driver, VoiceTile, note.id), what="the voice note")
    voice = tile_of(driver, VoiceTile, note.id)
    assert len(voice.ids.waveform.levels) == 64 and max(voice.ids.waveform.levels) == 255
    assert voice.clock_text.startswith("0:04")
    shots(driver, "voice")
    await driver.tap(voice.ids.play)
    await driver.wait_for(
        lambda: tile_of(driver, VoiceTile, note.id).player.state == "playing",
        within=30,
        what="playing",
    )
    voice = tile_of(driver, VoiceTile, note.id)
    await driver.settle(0.3)
    first = voice.player.position
    await driver.settle(0.8)
    assert voice.player.position > first + 0.4, "the position advances while playing"
    assert voice.playing and "/ 0:04" in voice.clock_text
    assert 0 < voice.ids.waveform.played < 1
    shots(driver, "playing")
    await driver.tap(voice.ids.play)
    assert voice.player.state == "paused"
    paused_at = voice.player.position
    await driver.settle(0.4)
    assert voice.player.position == paused_at

    # --- the voice button without a microphone: an audio file becomes a voice note
    await pick(driver, chat.ids.voice, tone_wav(tmp_path / "memo.wav", seconds=2.0))

    async def voice_sent() -> bool:
        page = await driver.app.require_client().history(conv.id)
        return any(
            m.is_own and m.attachments and m.attachments[0].kind == "voice"
            and m.status is not MessageStatus.SENDING
            for m in page.messages
        )  # fmt: skip

    await driver.wait_until(voice_sent, within=60, what="the voice note sent")
    shots(driver, "sent-voice")
