"""Paint a :class:`~.layout.Layout` into an RGBA Pillow image (no Kivy needed).

Glyphs are drawn into one alpha mask that tints a plane of the text colour (so anti-aliased
edges keep the colour instead of darkening), then emoji pictures are composited on top.
Where Pillow has libraqm, every run goes through HarfBuzz (shaping, marks, ligatures) with
its direction; otherwise Arabic runs are reshaped to presentation forms and reversed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw

from tidings.app.text import fonts
from tidings.app.text.bidi import MIRRORS
from tidings.app.text.layout import Layout, Run
from tidings.app.text.segment import clusters
from tidings.app.text.shaping import reshape


def basic_visual(text: str, rtl: bool) -> str:
    """What a glyph-by-glyph layout must draw for a run: shaped, mirrored and reversed."""
    if not rtl:
        return text
    return "".join(MIRRORS.get(c, c) for c in reversed(clusters(reshape(text))))


@lru_cache(maxsize=512)
def _emoji(key: str, size: int) -> Image.Image:
    return fonts.emoji_atlas().picture(key).resize((size, size), Image.Resampling.LANCZOS)


def _draw_run(draw: ImageDraw.ImageDraw, run: Run, x: float, baseline: int, size: int) -> None:
    face = fonts.font(run.font, size)
    if fonts.has_raqm():
        direction = "rtl" if run.rtl else "ltr"
        draw.text((x, baseline), run.text, font=face, fill=255, anchor="ls", direction=direction)
    else:
        draw.text((x, baseline), basic_visual(run.text, run.rtl), font=face, fill=255, anchor="ls")


def render(
    lay: Layout,
    color: Sequence[float],
    box: tuple[float | None, float | None] = (None, None),
    halign: str = "auto",
    valign: str = "top",
) -> Image.Image:
    """The laid-out text in `color` (RGBA floats 0..1) on a transparent image.

    `box` fixes the image's width and/or height (else it is as big as the text); `halign`
    ``auto`` puts right-to-left paragraphs at the right edge and the others at the left."""
    width = max(1, round(box[0] if box[0] is not None else lay.width))
    height = max(1, round(box[1] if box[1] is not None else lay.height))
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    size = lay.style.size
    top = {"top": 0, "middle": (height - lay.height) // 2, "bottom": height - lay.height}.get(
        valign, 0
    )
    pictures: list[tuple[str, int, int]] = []
    for line in lay.lines:
        align = halign
        if align in ("auto", "justify"):
            align = "right" if line.rtl else "left"
        left = {"left": 0.0, "center": (width - line.width) / 2, "right": width - line.width}[align]
        baseline = top + line.ascent
        for run in line.runs:
            x = left + run.x
            if run.emoji:
                y = baseline + size // 5 - lay.style.emoji_size
                pictures.append((run.emoji, round(x), y))
            else:
                _draw_run(draw, run, x, baseline, size)
        top += line.ascent + line.descent
    r, g, b, a = (max(0, min(255, round(c * 255))) for c in (*color[:4], 1.0)[:4])
    image = Image.new("RGBA", (width, height), (r, g, b, 0))
    image.putalpha(mask if a == 255 else mask.point(lambda v: v * a // 255))
    for key, x, y in pictures:
        image.alpha_composite(_emoji(key, lay.style.emoji_size), (max(0, x), max(0, y)))
    return image
