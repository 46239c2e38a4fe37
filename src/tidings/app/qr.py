"""Link codes as QR codes: drawn with the pure-Python `qrcode` package straight into a Kivy
texture (one texel per module, scaled up without smoothing), and the hook for scanning one.

Scanning needs a camera. A desktop build has none it can rely on, so :func:`camera_scanner`
answers None there and the approve screen offers the text field only. On Android the scanner
will be camera4kivy's preview with its zbar (pyzbar) analyser, handing the decoded text to the
same field; until that recipe is part of the build, there is no scanner on any platform.
"""

from __future__ import annotations

from collections.abc import Callable

from kivy.graphics.texture import Texture

#: white modules around the code, as the standard asks (four)
QUIET_ZONE = 4


def qr_matrix(text: str) -> list[list[bool]]:
    """The modules of the QR code of `text` (True: dark), quiet zone included."""
    import qrcode  # type: ignore[import-untyped]
    from qrcode.constants import ERROR_CORRECT_M  # type: ignore[import-untyped]

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(text)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def qr_texture(text: str) -> Texture:
    """A texture of the QR code of `text`: black on white, one texel per module, drawn with
    nearest-neighbour filtering so it stays sharp at any size."""
    matrix = qr_matrix(text)
    size = len(matrix)
    pixels = bytearray()
    for row in reversed(matrix):  # textures start at the bottom row
        for dark in row:
            pixels += b"\x00\x00\x00\xff" if dark else b"\xff\xff\xff\xff"
    texture = Texture.create(size=(size, size), colorfmt="rgba")
    texture.mag_filter = "nearest"
    texture.min_filter = "nearest"
    texture.blit_buffer(bytes(pixels), colorfmt="rgba", bufferfmt="ubyte")
    return texture


def camera_scanner() -> Callable[[Callable[[str], None]], None] | None:
    """A function that opens the camera and calls back with a scanned code, or None where
    there is no camera to scan with (desktop; Android until the camera4kivy/zbar recipe is
    built in)."""
    return None
