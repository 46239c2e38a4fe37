"""Kivy labels that draw through :mod:`tidings.app.text` (emoji, CJK, Arabic, Hebrew).

:class:`IntlLabel` is a drop-in :class:`~kivy.uix.label.Label`: the same ``text``,
``font_size``, ``bold``, ``italic``, ``color``, ``text_size``, ``halign``/``valign``,
``max_lines`` and ``shorten`` and the same ``texture``/``texture_size`` outputs, so KV rules
written for labels keep working; only the texture comes from the layout engine here. With
``markup`` on, tags are dropped and escapes resolved (the text is drawn plainly).
"""

from __future__ import annotations

import re
import time
from typing import Any

from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.properties import NumericProperty
from kivy.uix.label import Label

from tidings.app.text.layout import Layout, Style, layout
from tidings.app.text.render import render

_TAG = re.compile(r"\[/?[a-z_]+(?:=[^\]]*)?\]")
#: milliseconds spent making each of the last textures (read by the benchmark test)
TIMINGS: list[float] = []


def plain(markup: str) -> str:
    """Kivy markup without its tags, escapes resolved."""
    text = _TAG.sub("", markup)
    return text.replace("&bl;", "[").replace("&br;", "]").replace("&amp;", "&")


class IntlLabel(Label):  # type: ignore[misc]  # kivy is untyped
    """A label whose text can be in any script, with colour emoji."""

    def __init__(self, **kwargs: Any) -> None:
        self.text_layout: Layout | None = None
        super().__init__(**kwargs)

    def texture_update(self, *_args: Any) -> None:
        text = plain(self.text) if self.markup else self.text
        if not text:
            self.texture = None
            self.texture_size = [0, 0]
            self.text_layout = None
            return
        started = time.perf_counter()
        box_w, box_h = self.text_size
        # whole pixels, as Kivy's own providers do (int(), not round())
        style = Style(max(1, int(float(self.font_size))), bool(self.bold), bool(self.italic))
        lay = layout(
            text,
            style,
            width=None if box_w is None else float(box_w),
            max_lines=int(self.max_lines or 0) or (1 if self.shorten and box_h else 0),
            shorten=bool(self.shorten),
        )
        image = render(lay, self.color, (box_w, box_h), self.halign, self.valign)
        texture = Texture.create(size=image.size, colorfmt="rgba")
        texture.blit_buffer(image.tobytes(), colorfmt="rgba", bufferfmt="ubyte")
        texture.flip_vertical()
        self.text_layout = lay
        self.is_shortened = lay.shortened
        self.texture = texture
        self.texture_size = list(texture.size)
        TIMINGS.append((time.perf_counter() - started) * 1000)
        del TIMINGS[:-200]


class IntlWrapLabel(IntlLabel):
    """An :class:`IntlLabel` as wide as its text, wrapping at `max_width`."""

    max_width = NumericProperty(dp(260))

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("size_hint", (None, None))
        super().__init__(**kwargs)
        self.bind(text=self._fit, max_width=self._fit, font_size=self._fit)
        self._fit()

    def _fit(self, *_args: Any) -> None:
        self.text_size = (None, None)
        self.texture_update()
        if self.texture_size[0] > self.max_width:
            self.text_size = (self.max_width, None)
            self.texture_update()
        self.size = self.texture_size
