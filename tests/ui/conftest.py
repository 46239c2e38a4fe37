"""Fixtures of the UI suite: the real server (from the integration fixtures), peers that use the
public client API, and the app itself driven in-process under Xvfb.

Everything runs on the test's asyncio loop: the app's client, the peers and the frames Kivy
renders (see `tidings.app.harness`). Each test saves screenshots under build/ui-artifacts/
(gitignored; CI may upload it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Kivy reads these when it is first imported (lazily, inside the fixtures below).
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("KIVY_HOME", str(Path(__file__).resolve().parents[2] / ".kivy"))

from tests.integration.conftest import ServerProcess, server, server_factory, store_env  # noqa: F401

from tidings.client import Client

if TYPE_CHECKING:
    from tidings.app.harness import AppDriver

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "ui-artifacts"

PeerFactory = Callable[[str], Awaitable[Client]]
AppFactory = Callable[..., Awaitable["AppDriver"]]


Shots = Callable[["AppDriver", str], Path]


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """`shots(driver, "name")` saves the window as artifacts/<test>-<name>.png."""

    def save(driver: AppDriver, name: str) -> Path:
        return driver.screenshot(ARTIFACTS / f"{request.node.name}-{name}.png")

    return save


@pytest.fixture
async def peer(server: ServerProcess, tmp_path: Path) -> AsyncIterator[PeerFactory]:  # noqa: F811
    """`await peer("bob")`: a new account with a started, synced client (closed at the end)."""
    clients: list[Client] = []

    async def make(username: str) -> Client:
        client = await Client.create_account(tmp_path / f"peer-{username}", server.url, username)
        clients.append(client)
        await client.start()
        await client.wait_synced(30)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def app(server: ServerProcess, tmp_path: Path) -> AsyncIterator[AppFactory]:  # noqa: F811
    """`await app()` opens the app on an empty profile (onboarding); `await app("alice")` first
    creates the account alice there, so the app opens at the chat list."""
    from tidings.app.harness import AppDriver

    drivers: list[AppDriver] = []
    profile = tmp_path / "app-profile"

    async def start(username: str | None = None) -> AppDriver:
        if username is not None:
            client = await Client.create_account(profile, server.url, username)
            await client.close()
        driver = await AppDriver.start(server.url, profile)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        await driver.stop()
