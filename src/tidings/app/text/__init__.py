"""Text in any script for the app: colour emoji, CJK, Arabic and Hebrew in Kivy widgets.

Kivy's SDL2 text provider draws one font per label, with neither shaping nor bidi, so most
of the world's text came out as boxes. The way chosen (measured in docs/text-rendering.md):

* Kivy's Pango provider: the Kivy 2.3.1 wheel has no ``_text_pango`` module at all, and
  python-for-android has no Pango recipe — not usable on either platform.
* Kivy's SDL2 provider per font run: would need one core label (and texture) per run and
  still no shaping — rejected.
* **Chosen:** our own layout on top of Pillow (already a dependency, and a python-for-android
  recipe). Pure-Python itemization (:mod:`.segment`: grapheme clusters, emoji sequences),
  font fallback by character map (:mod:`.fonts`), bidi (:mod:`.bidi`), line wrapping
  (:mod:`.layout`), then Pillow draws each run — through libraqm (HarfBuzz + FriBiDi) where
  the Pillow build has it (the desktop wheels), else glyph by glyph after the pure-Python
  Arabic reshaping of :mod:`.shaping` (the Android recipe). Emoji are Twemoji pictures from a
  packaged atlas. :mod:`.widgets` turns the picture into a Kivy texture behind a Label API.

Nothing here but :mod:`.widgets` imports Kivy.
"""

from __future__ import annotations

from tidings.app.text.layout import Layout, Style, layout
from tidings.app.text.render import render

__all__ = ["Layout", "Style", "layout", "render"]
