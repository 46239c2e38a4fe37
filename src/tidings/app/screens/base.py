"""What every screen has: a typed handle on the running app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kivy.app import App
from kivy.uix.screenmanager import Screen

if TYPE_CHECKING:
    from tidings.app.application import TidingsApp
    from tidings.client import Client


def running_app() -> TidingsApp:
    from tidings.app.application import TidingsApp

    app = App.get_running_app()
    if not isinstance(app, TidingsApp):
        raise RuntimeError("the Tidings app is not running")
    return app


class AppScreen(Screen):  # type: ignore[misc]  # kivy is untyped
    """A screen of the app."""

    @property
    def tidings(self) -> TidingsApp:
        return running_app()

    @property
    def client(self) -> Client:
        return self.tidings.require_client()

    def on_shown(self) -> None:
        """Called each time the app navigates to this screen."""
