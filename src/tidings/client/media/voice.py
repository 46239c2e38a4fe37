"""Voice notes: any audio PyAV reads becomes Ogg Opus, mono, 48 kHz, 24 kbps, with a waveform.

Guarantees: transcoding happens on the device and the output carries **no metadata of the
input** (tags, encoder names, chapters are not copied: only resampled samples are encoded); the
result is then encrypted by :mod:`tidings.crypto.attachment`, and its waveform and duration
travel only inside the encrypted message. A note longer than :data:`MAX_DURATION_S` (15 minutes)
is refused with :class:`.errors.VoiceTooLongError` — from the container header when it states a
duration, otherwise as soon as decoding passes the limit, so a long input is never fully decoded.

The waveform is :data:`WAVEFORM_BUCKETS` (64) values, one per equal slice of the note, each the
peak absolute sample level of its slice, **normalised to 0..255** with 255 for the loudest slice
(all zeros for silence). Samples go through :class:`av.AudioResampler` to signed 16-bit mono at
48 kHz in 20 ms frames (libopus' frame size).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import IO, Final

import av
import av.error
import numpy as np
from av.audio.resampler import AudioResampler

from .errors import UnsupportedMediaError, VoiceTooLongError
from .files import VOICE_MIME

__all__ = [
    "BIT_RATE",
    "MAX_DURATION_S",
    "SAMPLE_RATE",
    "WAVEFORM_BUCKETS",
    "VoiceNote",
    "transcode_voice",
    "waveform_from_peaks",
]

SAMPLE_RATE: Final = 48_000
BIT_RATE: Final = 24_000
FRAME_SAMPLES: Final = 960  # 20 ms at 48 kHz
MAX_DURATION_S: Final = 15 * 60
WAVEFORM_BUCKETS: Final = 64
_FULL_SCALE: Final = 32768


@dataclass(frozen=True, slots=True)
class VoiceNote:
    """An encoded voice note: Ogg Opus bytes, duration and the 64-byte 0..255 waveform."""

    data: bytes
    duration_ms: int
    waveform: bytes
    content_type: str = VOICE_MIME


def waveform_from_peaks(peaks: list[int], buckets: int = WAVEFORM_BUCKETS) -> bytes:
    """Fold per-frame peaks into ``buckets`` peak values scaled so the loudest is 255."""
    if not peaks:
        return bytes(buckets)
    n = len(peaks)
    folded = [
        max(peaks[(i * n) // buckets : max((i * n) // buckets + 1, ((i + 1) * n) // buckets)])
        for i in range(buckets)
    ]
    top = max(folded)
    if top <= 0:
        return bytes(buckets)
    return bytes(min(255, round(255 * value / top)) for value in folded)


def _stated_duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def transcode_voice(
    source: str | os.PathLike[str] | IO[bytes], *, max_duration_s: float = MAX_DURATION_S
) -> VoiceNote:
    """Transcode the first audio stream of ``source`` into an Ogg Opus voice note."""
    try:
        container = av.open(source, "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UnsupportedMediaError(f"not readable audio: {exc}") from exc
    with container:
        if not isinstance(container, av.container.InputContainer) or not container.streams.audio:
            raise UnsupportedMediaError("the file has no audio stream")
        stream = container.streams.audio[0]
        stated = _stated_duration_s(container, stream)
        if stated > max_duration_s:
            raise VoiceTooLongError(stated, max_duration_s)
        try:
            return _encode(container, stream, max_duration_s)
        except av.error.FFmpegError as exc:
            raise UnsupportedMediaError(f"audio cannot be decoded: {exc}") from exc


def _encode(
    container: av.container.InputContainer, stream: av.AudioStream, max_duration_s: float
) -> VoiceNote:
    limit = int(max_duration_s * SAMPLE_RATE)
    resampler = AudioResampler(
        format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
    )
    out_buf = io.BytesIO()
    peaks: list[int] = []
    samples = 0
    with av.open(out_buf, "w", format="ogg", options={"fflags": "+bitexact"}) as output:
        encoder = output.add_stream("libopus", rate=SAMPLE_RATE)
        encoder.layout = "mono"
        encoder.format = "s16"
        encoder.bit_rate = BIT_RATE
        encoder.codec_context.options = {"application": "voip", "vbr": "constrained"}

        def push(frame: av.AudioFrame | None) -> None:
            nonlocal samples
            for chunk in resampler.resample(frame):
                pcm = chunk.to_ndarray()
                samples += chunk.samples
                if samples > limit:
                    raise VoiceTooLongError(samples / SAMPLE_RATE, max_duration_s)
                peaks.append(int(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0)
                chunk.pts = None
                output.mux(encoder.encode(chunk))

        for packet in container.demux(stream):
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    frame.pts = None
                    push(frame)
        push(None)  # flush the resampler
        output.mux(encoder.encode(None))
    if samples == 0:
        raise UnsupportedMediaError("the audio stream has no samples")
    return VoiceNote(
        data=out_buf.getvalue(),
        duration_ms=round(samples * 1000 / SAMPLE_RATE),
        waveform=waveform_from_peaks([min(p, _FULL_SCALE) for p in peaks]),
    )
