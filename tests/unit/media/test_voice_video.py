"""Voice notes (Ogg Opus 48 kHz mono ~24 kbps, waveform, 15 min cap) and video probing."""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tidings.client.media.errors import UnsupportedMediaError, VoiceTooLongError
from tidings.client.media.files import VOICE_MIME, sniff_mime
from tidings.client.media.video import probe_video
from tidings.client.media.voice import WAVEFORM_BUCKETS, transcode_voice, waveform_from_peaks


def _wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return path


def _speechlike(seconds: float, rate: int, amplitude: np.ndarray | float) -> np.ndarray:
    """Harmonics with a syllable-rate envelope plus a little noise: closer to speech than a tone."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(7)
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), 1))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    signal = voiced * envelope / 2.1 + rng.normal(0, 0.05, t.size)
    return np.clip(signal * amplitude, -1, 1) * 32767


@pytest.fixture(scope="module")
def quiet_then_loud(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rate, seconds = 16_000, 12
    t = np.arange(rate * seconds) / rate
    amplitude = np.where(t < seconds / 2, 0.04, 0.9)
    return _wav(
        tmp_path_factory.mktemp("voice") / "in.wav", _speechlike(seconds, rate, amplitude), rate
    )


def test_wav_becomes_ogg_opus_mono_48k_at_about_24_kbps(quiet_then_loud: Path) -> None:
    note = transcode_voice(quiet_then_loud)
    assert note.content_type == VOICE_MIME == sniff_mime(note.data[:512])
    assert abs(note.duration_ms - 12_000) < 100
    kbps = len(note.data) * 8 / note.duration_ms
    print(f"voice: {kbps:.1f} kbps including Ogg overhead")
    assert 20 <= kbps <= 28
    with av.open(io.BytesIO(note.data)) as container:
        assert container.format.name == "ogg"
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.rate == 48_000 and stream.channels == 1
        assert not container.metadata and not stream.metadata  # no encoder tags


def test_waveform_follows_loudness(quiet_then_loud: Path) -> None:
    wave_ = transcode_voice(quiet_then_loud).waveform
    assert len(wave_) == WAVEFORM_BUCKETS == 64
    first, second = wave_[:30], wave_[34:]
    assert max(first) < 40  # the quiet half
    assert min(second) > 150  # the loud half
    assert max(wave_) == 255


def test_waveform_folding() -> None:
    assert waveform_from_peaks([]) == bytes(64)
    assert waveform_from_peaks([0, 0, 0]) == bytes(64)
    short = waveform_from_peaks([10, 20])  # fewer frames than buckets
    assert len(short) == 64 and short[0] == 128 and short[-1] == 255


def test_sixteen_minutes_refused(tmp_path: Path) -> None:
    rate = 8000
    path = _wav(tmp_path / "long.wav", np.zeros(16 * 60 * rate), rate)
    with pytest.raises(VoiceTooLongError) as info:
        transcode_voice(path)
    assert info.value.max_s == 900
    # A lower cap is enforced while decoding too (duration known only by decoding).
    with pytest.raises(VoiceTooLongError):
        transcode_voice(_wav(tmp_path / "short.wav", np.zeros(3 * rate), rate), max_duration_s=1)


def test_not_audio_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(UnsupportedMediaError):
        transcode_voice(path)
    (tmp_path / "junk.bin").write_bytes(b"\x00junk" * 100)
    with pytest.raises(UnsupportedMediaError):
        transcode_voice(tmp_path / "junk.bin")


def _encode_video(path: Path, width: int, height: int, seconds: int, fps: int = 25) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[: height // 2] = (230, 30, 30)  # red top half
            pixels[height // 2 :] = (30, 30, 230)
            pixels[:, :4] = i % 255
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_video_thumbnail_duration_and_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _encode_video(path, 320, 240, seconds=2)
    info = probe_video(path)
    assert (info.width, info.height) == (320, 240)
    assert info.duration_ms is not None and abs(info.duration_ms - 2000) <= 80
    thumb = Image.open(io.BytesIO(info.thumbnail.data))
    assert thumb.format == "JPEG" and thumb.size == (320, 240)
    assert thumb.getpixel((160, 40))[0] > 150 and thumb.getpixel((160, 200))[2] > 150
    assert "exif" not in thumb.info
    assert len(info.thumbnail.blurhash) >= 6


def test_video_thumbnail_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    _encode_video(path, 1280, 720, seconds=1)
    info = probe_video(path, thumbnail_side=640)
    assert (info.width, info.height) == (1280, 720)
    assert (info.thumbnail.width, info.thumbnail.height) == (640, 360)


def test_audio_only_is_not_a_video(quiet_then_loud: Path) -> None:
    with pytest.raises(UnsupportedMediaError):
        probe_video(quiet_then_loud)
