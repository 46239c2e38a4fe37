"""Playing voice notes in the app.

A voice note is Ogg Opus (:mod:`tidings.client.media.voice`), which Kivy's audio providers may
not play. :class:`VoicePlayer` decodes it once with PyAV into a temporary 16-bit WAV beside the
app's cache and plays that with ``SoundLoader``. Where there is no audio output (a headless
machine, Xvfb, a provider that fails) playback degrades to a silent clock: the state still
changes to ``playing``, the position still advances in real time and stops at the end, so the
bubble behaves the same.

The position is always the clock's (start position + time since play), never the audio
provider's, which some providers do not report. ``pause`` keeps the position, ``play`` goes on
from it, the end rewinds to 0.
"""

from __future__ import annotations

import logging
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty, NumericProperty, OptionProperty

log = logging.getLogger(__name__)

#: seconds between two position updates while playing
TICK = 0.1


def decode_to_wav(source: Path, dest: Path) -> Path:
    """Decode any audio PyAV reads (Ogg Opus) into a mono 48 kHz 16-bit WAV at ``dest``."""
    import av  # imported on use: the app starts without it

    with av.open(str(source)) as container, wave.open(str(dest), "wb") as out:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        for frame in container.decode(stream):
            for chunk in resampler.resample(frame):
                out.writeframes(bytes(chunk.planes[0])[: chunk.samples * 2])
        for chunk in resampler.resample(None):
            out.writeframes(bytes(chunk.planes[0])[: chunk.samples * 2])
    return dest


class VoicePlayer(EventDispatcher):  # type: ignore[misc]  # kivy is untyped
    """Play/pause one voice note (module docstring); widgets bind to ``state`` and
    ``position`` (seconds)."""

    state = OptionProperty("stopped", options=["stopped", "playing", "paused"])
    position = NumericProperty(0.0)
    duration = NumericProperty(0.0)
    #: False once the audio could not be played: the clock runs alone (silently)
    audible = BooleanProperty(True)

    def __init__(self, path: Path | None, duration_ms: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.duration = (duration_ms or 0) / 1000.0
        self._sound: Any = None
        self._loaded = False
        self._started_at = 0.0
        self._started_from = 0.0
        self._ticker: Any = None
        self._wav: Path | None = None

    # ------------------------------------------------------------------ control

    def toggle(self) -> None:
        if self.state == "playing":
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.state == "playing":
            return
        if self.duration <= 0 or self.position >= self.duration:
            self.position = 0.0
        self._load()
        if self._sound is not None:
            try:
                self._sound.play()
                if self.position > 0:
                    self._sound.seek(self.position)
            except Exception:  # an audio device that went away: go on silently
                log.info("voice playback failed; the clock runs alone", exc_info=True)
                self._sound = None
                self.audible = False
        self._started_at = time.monotonic()
        self._started_from = self.position
        self.state = "playing"
        self._ticker = Clock.schedule_interval(self._tick, TICK)

    def pause(self) -> None:
        if self.state != "playing":
            return
        self._tick(0)
        self._stop_ticker()
        self._stop_sound()
        self.state = "paused"

    def stop(self) -> None:
        self._stop_ticker()
        self._stop_sound()
        self.position = 0.0
        self.state = "stopped"

    def set_path(self, path: Path | None) -> None:
        """The note was downloaded (or went away): play from this file next time."""
        if path != self.path:
            self.path = path
            self._loaded = False
            self._sound = None

    def release(self) -> None:
        """Stop and forget the decoded file (the bubble went away)."""
        self.stop()
        if self._wav is not None:
            self._wav.unlink(missing_ok=True)
            self._wav = None

    # ------------------------------------------------------------------ the work

    def _tick(self, _dt: float) -> None:
        position = self._started_from + (time.monotonic() - self._started_at)
        if self.duration and position >= self.duration:
            self.stop()
            return
        self.position = position

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _stop_sound(self) -> None:
        if self._sound is not None:
            try:
                self._sound.stop()
            except Exception:
                log.debug("stopping the sound failed", exc_info=True)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or not self.path.exists():
            self.audible = False
            return
        try:
            from kivy.core.audio import SoundLoader

            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept until release()
                prefix="tidings-voice-", suffix=".wav", delete=False
            )
            handle.close()
            self._wav = decode_to_wav(self.path, Path(handle.name))
            sound = SoundLoader.load(str(self._wav))
        except Exception:
            log.info("cannot decode or load %s; playing silently", self.path, exc_info=True)
            sound = None
        self._sound = sound
        self.audible = sound is not None
        if sound is not None and not self.duration and sound.length:
            self.duration = float(sound.length)
