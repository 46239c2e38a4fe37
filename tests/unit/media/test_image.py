"""Photos: upright, ≤ 1280 px, JPEG q≈80, no metadata, a BlurHash of the upright picture."""

from __future__ import annotations

import io
import time

import blurhash
import pytest
from PIL import ExifTags, Image, ImageCms

from tidings.client.media.errors import UnsupportedMediaError
from tidings.client.media.image import HEIF_SUPPORTED, encode_jpeg, prepare_image

MARKER = "TIDINGS-MARKER-7f3a"

# The IJG standard luminance table (libjpeg's quality scaling base).
_STD_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip


def estimate_quality(jpeg: bytes) -> float:
    """libjpeg quality from the luminance quantization table (order-independent)."""
    table = Image.open(io.BytesIO(jpeg)).quantization[0]  # type: ignore[attr-defined]
    scale = 100 * sum(table) / sum(_STD_LUMA)
    return (200 - scale) / 2 if scale <= 100 else 5000 / scale


def _photo(width: int = 4000, height: int = 3000) -> Image.Image:
    """Left half red, right half blue (as stored, before orientation)."""
    image = Image.new("RGB", (width, height), (220, 20, 20))
    image.paste((20, 20, 220), (width // 2, 0, width, height))
    return image


def _exif_with_gps(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = MARKER
    exif[ExifTags.Base.ImageDescription] = MARKER
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    return exif


@pytest.fixture(scope="module")
def rotated_jpeg() -> bytes:
    out = io.BytesIO()
    _photo().save(out, "JPEG", quality=90, exif=_exif_with_gps(6), comment=MARKER.encode())
    data = out.getvalue()
    assert MARKER.encode() in data  # the marker really is in the input
    reopened = Image.open(io.BytesIO(data))
    assert reopened.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # and so are the GPS tags
    return data


def test_orientation_6_photo_arrives_upright_and_downscaled(rotated_jpeg: bytes) -> None:
    started = time.perf_counter()
    result = prepare_image(io.BytesIO(rotated_jpeg))
    elapsed = time.perf_counter() - started
    print(
        f"4000x3000 JPEG -> {result.width}x{result.height}: {elapsed * 1000:.0f} ms, "
        f"{len(result.data)}/{len(rotated_jpeg)} bytes"
    )
    assert (result.width, result.height) == (960, 1280)
    out = Image.open(io.BytesIO(result.data))
    assert out.format == "JPEG" and out.size == (960, 1280)
    # Orientation 6 = rotate 90° clockwise: the stored left (red) half is now on top.
    top, bottom = out.getpixel((480, 100)), out.getpixel((480, 1180))
    assert top[0] > 150 and top[2] < 80, top
    assert bottom[2] > 150 and bottom[0] < 80, bottom


def test_output_is_quality_80(rotated_jpeg: bytes) -> None:
    result = prepare_image(io.BytesIO(rotated_jpeg))
    assert 78 <= estimate_quality(result.data) <= 82


def test_no_metadata_survives(rotated_jpeg: bytes) -> None:
    result = prepare_image(io.BytesIO(rotated_jpeg))
    assert MARKER.encode() not in result.data
    assert b"Exif" not in result.data and b"http://ns.adobe.com/xap" not in result.data
    out = Image.open(io.BytesIO(result.data))
    assert len(out.getexif()) == 0
    assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    for key in ("exif", "icc_profile", "comment", "xmp", "photoshop"):
        assert key not in out.info, key


def test_blurhash_decodes_to_the_upright_picture(rotated_jpeg: bytes) -> None:
    result = prepare_image(io.BytesIO(rotated_jpeg))
    assert blurhash.is_valid_blurhash(result.blurhash)
    width, height = result.width // 40, result.height // 40  # 24 x 32, the photo's aspect
    placeholder = blurhash.decode(result.blurhash, width, height).convert("RGB")
    assert placeholder.size == (width, height)
    top = placeholder.getpixel((width // 2, 2))
    bottom = placeholder.getpixel((width // 2, height - 3))
    assert top[0] > top[2] and bottom[2] > bottom[0]


def test_icc_profile_is_applied_and_dropped() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    _photo(300, 200).save(out, "JPEG", icc_profile=icc)
    result = prepare_image(io.BytesIO(out.getvalue()))
    assert "icc_profile" not in Image.open(io.BytesIO(result.data)).info
    assert (result.width, result.height) == (300, 200)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_with_alpha(fmt: str) -> None:
    image = Image.new("RGBA", (2000, 500), (0, 0, 255, 0))  # fully transparent
    image.paste((0, 200, 0, 255), (0, 0, 1000, 500))
    out = io.BytesIO()
    image.save(out, fmt)
    result = prepare_image(io.BytesIO(out.getvalue()))
    assert (result.width, result.height) == (1280, 320)
    decoded = Image.open(io.BytesIO(result.data))
    assert decoded.getpixel((1200, 160))[0] > 240  # transparency became white, not blue


def test_heic_input() -> None:
    assert HEIF_SUPPORTED  # pillow-heif is a dependency: HEIC photos from phones must open
    out = io.BytesIO()
    _photo(800, 600).save(out, "HEIF", quality=80)
    result = prepare_image(io.BytesIO(out.getvalue()))
    assert (result.width, result.height) == (800, 600)


def test_small_image_is_not_upscaled() -> None:
    result = encode_jpeg(_photo(64, 48))
    assert (result.width, result.height) == (64, 48)


def test_not_an_image_is_refused() -> None:
    with pytest.raises(UnsupportedMediaError):
        prepare_image(io.BytesIO(b"%PDF-1.7 definitely not a photo"))
