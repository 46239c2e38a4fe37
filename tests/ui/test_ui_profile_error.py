"""A damaged profile database shows a screen that says so and what to do, not a frozen
splash."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import ServerProcess
from tests.ui.conftest import Shots

from tidings.app.harness import AppDriver
from tidings.app.screens.profile_error import ProfileErrorScreen


async def test_a_corrupt_profile_shows_an_error_screen(
    server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "token").write_text("k" * 16 + "." + "s" * 43)
    (profile / "tidings.db").write_bytes(b"this is not an SQLite database, just junk\n" * 200)
    driver = await AppDriver.start(server.url, profile)
    try:
        await driver.wait_for(lambda: driver.current == "profile_error", 10, "the error screen")
        screen = driver.app.screen("profile_error")
        assert isinstance(screen, ProfileErrorScreen)
        assert screen.title == "This profile is damaged"
        assert "mv " in screen.message and "tidings device link" in screen.message
        shots(driver, "profile-error")
    finally:
        await driver.stop()
