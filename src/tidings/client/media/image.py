"""Photos for sending: upright, downscaled, re-encoded as JPEG, with every piece of metadata gone.

Guarantees: the output is a **freshly built** RGB JPEG — pixels only. No EXIF (camera, time, GPS),
no XMP, no IPTC, no ICC profile, no JPEG comment or application segment of the input survives,
because the pixels are copied into a new image that carries no ``info`` and the encoder is given
no metadata. The EXIF orientation is applied to the pixels first, so the photo stays upright. An
embedded ICC profile is used to convert the pixels to sRGB before it is dropped.

Processing happens on the device; the result is then encrypted by
:mod:`tidings.crypto.attachment` before upload. Bounds: inputs above :data:`MAX_PIXELS` are
refused before decoding (:class:`.errors.MediaTooLargeError`); unreadable or unsupported inputs
raise :class:`.errors.UnsupportedMediaError`.

JPEG inputs are decoded with ``Image.draft`` (DCT scaling) at the smallest scale still at least
1280 px, which makes a 12 MP photo several times cheaper to open. The BlurHash placeholder (4x3
components) is computed on a ≈32 px copy, in pure Python (:mod:`.blurhash`).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import IO, Final

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from . import blurhash
from .errors import MediaTooLargeError, UnsupportedMediaError

__all__ = [
    "HEIF_SUPPORTED",
    "MAX_PIXELS",
    "MAX_SIDE",
    "QUALITY",
    "PreparedImage",
    "encode_jpeg",
    "image_blurhash",
    "prepare_image",
]

MAX_SIDE: Final = 1280
QUALITY: Final = 80
#: Refuse decompression bombs: 100 megapixels is above any phone camera's output.
MAX_PIXELS: Final = 100_000_000
BLURHASH_COMPONENTS: Final = (4, 3)
BLURHASH_SIDE: Final = 32
_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "WEBP", "HEIF", "BMP", "GIF", "TIFF"})

try:  # HEIC/HEIF (iPhone photos) when pillow-heif is installed.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED: Final = True
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    HEIF_SUPPORTED = False  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A photo ready for encryption: JPEG bytes, their dimensions and a BlurHash."""

    data: bytes
    width: int
    height: int
    blurhash: str
    content_type: str = "image/jpeg"


def image_blurhash(image: Image.Image) -> str:
    """The 4x3-component BlurHash of ``image``, computed on a ≈32 px copy (input untouched)."""
    small = image.convert("RGB") if image.mode != "RGB" else image.copy()
    small.thumbnail((BLURHASH_SIDE, BLURHASH_SIDE), Image.Resampling.BILINEAR)
    return blurhash.encode(small, *BLURHASH_COMPONENTS)


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    if not icc:
        return image
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(image, src, dst, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken profile: keep the pixels as they are
    return converted if converted is not None else image


def _flatten(image: Image.Image) -> Image.Image:
    """RGB pixels; transparency is composited onto white (JPEG has no alpha)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def encode_jpeg(
    image: Image.Image,
    *,
    max_side: int = MAX_SIDE,
    quality: int = QUALITY,
    icc: bytes | None = None,
) -> PreparedImage:
    """Downscale ``image`` to ``max_side``, convert to sRGB and encode a metadata-free JPEG.

    ``image`` must already be upright. Used for photos and for video thumbnails.
    """
    image = _flatten(image)
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    image = _to_srgb(image, icc)
    # A brand-new image: no info dict, hence no EXIF/XMP/ICC/comment to carry over.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=quality, optimize=True, exif=b"", icc_profile=None)
    return PreparedImage(
        data=out.getvalue(),
        width=clean.width,
        height=clean.height,
        blurhash=image_blurhash(clean),
    )


def prepare_image(
    source: str | os.PathLike[str] | IO[bytes], *, max_side: int = MAX_SIDE, quality: int = QUALITY
) -> PreparedImage:
    """Open a photo (JPEG, PNG, WebP, HEIC...) and return it upright, ≤ ``max_side``, as JPEG."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (UnidentifiedImageError, Image.DecompressionBombWarning) as exc:
        raise UnsupportedMediaError(f"not a readable image: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise MediaTooLargeError(str(exc)) from exc
    with image:
        if image.format not in _FORMATS:
            raise UnsupportedMediaError(f"unsupported image format {image.format}")
        if image.width * image.height > MAX_PIXELS:
            raise MediaTooLargeError(f"image of {image.width}x{image.height} pixels is too large")
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max_side, max_side))
        icc = image.info.get("icc_profile")
        try:
            upright = ImageOps.exif_transpose(image) or image
            upright.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnsupportedMediaError(f"image cannot be decoded: {exc}") from exc
        return encode_jpeg(
            upright, max_side=max_side, quality=quality, icc=icc if isinstance(icc, bytes) else None
        )
