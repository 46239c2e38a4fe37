"""What shows while the profile opens (a blink on a phone): the logo, nothing to tap."""

from __future__ import annotations

from tidings.app.screens.base import AppScreen


class SplashScreen(AppScreen):
    pass
