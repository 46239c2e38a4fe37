"""Fixtures for the libsignal interop suite: one Node peer per pinned libsignal version."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from libsignal_peer import VERSIONS, LibsignalPeer


@pytest.fixture(scope="session")
def peers() -> Iterator[Callable[[str], LibsignalPeer]]:
    """Start (once) and hand out the ``node peer.mjs <version>`` process of a version."""
    running: dict[str, LibsignalPeer] = {}

    def get(version: str) -> LibsignalPeer:
        if version not in running:
            running[version] = LibsignalPeer(version)
        return running[version]

    yield get
    for p in running.values():
        p.close()


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"libsignal-{v}" for v in VERSIONS])
def peer(request: pytest.FixtureRequest, peers: Callable[[str], LibsignalPeer]) -> LibsignalPeer:
    """The running peer of each pinned version in turn."""
    return peers(request.param)
