"""PQXDH with real libsignal while our ML-KEM runs on the pure-Python fallback (kyber-py).

The Android build may lack OpenSSL's ML-KEM; these sessions prove the fallback's Kyber prekeys
and ciphertexts are libsignal's, both ways: libsignal encapsulates to a prekey we made and we
decapsulate, and we encapsulate to libsignal's prekey.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from libsignal_peer import LibsignalPeer
from test_session_interop import _prekey_then_whisper, _start

from tidings.crypto.kem import backend_name, select_backend

pytestmark = pytest.mark.interop


@pytest.fixture
def fallback_kem() -> Iterator[None]:
    before = backend_name()
    select_backend("kyber-py")
    yield
    select_backend(before)


@pytest.mark.usefixtures("fallback_kem")
@pytest.mark.parametrize("version", ["0.72.1", "0.90.0"], ids=lambda v: f"libsignal-{v}-v4")
@pytest.mark.parametrize("we_initiate", [True, False], ids=["we-initiate", "libsignal-initiates"])
def test_pqxdh_session_through_the_fallback(
    peers: Callable[[str], LibsignalPeer], version: str, we_initiate: bool
) -> None:
    conv = _start(peers(version), True, we_initiate)
    _prekey_then_whisper(conv, we_initiate)
