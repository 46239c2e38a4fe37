"""The pure-Python BlurHash against blurhash-python (the reference C implementation): the same
strings from the same pixels, the same placeholders to within one level of rounding."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import blurhash as reference
import pytest
from PIL import Image, ImageDraw

from tidings.client.media import blurhash
from tidings.client.media.image import image_blurhash


def _samples(count: int) -> Iterator[tuple[Image.Image, int, int]]:
    """Noise, flat colours, gradients and drawn shapes, 1-32 px a side, 1-9 components."""
    rng = random.Random(7)
    for k in range(count):
        w, h = rng.randint(1, 32), rng.randint(1, 32)
        kind = k % 4
        if kind == 0:
            image = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
        elif kind == 1:
            image = Image.new("RGB", (w, h), (rng.randrange(256), 0, rng.randrange(256)))
        elif kind == 2:
            image = Image.linear_gradient("L").resize((w, h)).convert("RGB")
        else:
            image = Image.new("RGB", (w, h), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            for _ in range(5):
                x0, y0 = rng.randrange(w), rng.randrange(h)
                box = (x0, y0, x0 + rng.randrange(w), y0 + rng.randrange(h))
                draw.ellipse(box, fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        yield image, rng.randint(1, 9), rng.randint(1, 9)


def test_encode_is_identical_to_the_c_implementation() -> None:
    for image, x, y in _samples(400):
        # the C wrapper closes the image it is given: hand it a copy
        assert blurhash.encode(image, x, y) == reference.encode(image.copy(), x, y), (
            image.size,
            x,
            y,
        )


def test_image_blurhash_of_a_photo_is_the_c_one() -> None:
    photo = Image.effect_mandelbrot((640, 480), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    small = photo.copy()
    small.thumbnail((32, 32), Image.Resampling.BILINEAR)
    assert image_blurhash(photo) == reference.encode(small, 4, 3)


def test_decode_matches_the_c_implementation_within_rounding() -> None:
    # C sums in single precision, this module in double: a channel may land one level apart
    rng = random.Random(3)
    differing = 0
    for image, x, y in _samples(200):
        hash_ = reference.encode(image.copy(), x, y)
        width, height = rng.randint(1, 40), rng.randint(1, 64)
        ours = blurhash.decode(hash_, width, height).tobytes()
        theirs = reference.decode(hash_, width, height).tobytes()
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 1
        differing += ours != theirs
    assert differing <= 10  # nearly all identical


def test_punch_matches() -> None:
    hash_ = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
    assert blurhash.decode(hash_, 8, 6, punch=2).tobytes() == (
        reference.decode(hash_, 8, 6, punch=2).tobytes()
    )


@pytest.mark.parametrize(
    "bad", ["", "abc", "LEHV6nWB2yk8pyo0adR*.7kCMdn", "LEHV6nWB2yk8pyo0adR*.7kCMd\u00e9j"]
)
def test_malformed_hashes_are_refused(bad: str) -> None:
    assert not blurhash.is_valid_blurhash(bad)
    with pytest.raises(ValueError):
        blurhash.decode(bad, 4, 4)


def test_encode_does_not_close_its_input() -> None:
    image = Image.new("RGB", (8, 8), (10, 200, 30))
    blurhash.encode(image, 4, 3)
    assert image.getpixel((0, 0)) == (10, 200, 30)


def test_fast_enough_for_a_phone() -> None:
    """One encode per photo sent (a 32 px copy), one 32 px decode per media bubble shown:
    a few milliseconds here, so tens on a slow phone at worst."""
    photo = Image.effect_mandelbrot((32, 24), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    started = time.perf_counter()
    for _ in range(10):
        hash_ = blurhash.encode(photo, 4, 3)
        blurhash.decode(hash_, 32, 24)
    assert (time.perf_counter() - started) / 10 < 0.05
