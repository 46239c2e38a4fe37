"""What shows instead of the app when the profile cannot be opened (a damaged database): what
happened and what to do, nothing to tap that could make it worse."""

from __future__ import annotations

from kivy.properties import StringProperty

from tidings.app.screens.base import AppScreen


class ProfileErrorScreen(AppScreen):
    title = StringProperty("This profile cannot be opened")
    message = StringProperty("")


def breakable(text: str, width: int = 30) -> str:
    """``text`` with words longer than ``width`` (paths) split over lines: a label wraps at
    spaces only."""
    words = []
    for word in text.split(" "):
        while len(word) > width:
            words.append(word[:width] + "\n")
            word = word[width:]
        words.append(word)
    return " ".join(words).replace("\n ", "\n")
