"""The import-time check of what libsodium/PyNaCl provide, and the diagnostics report."""

from __future__ import annotations

import pytest
from nacl import bindings

from tidings.crypto import capabilities


def test_this_build_has_what_xeddsa_needs() -> None:
    capabilities.check_sodium()


def test_old_pynacl_is_refused_with_the_needed_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(bindings, "crypto_scalarmult_ed25519_base_noclamp")
    with pytest.raises(ImportError) as info:
        capabilities.check_sodium()
    message = str(info.value)
    assert "PyNaCl >= 1.4" in message and "libsodium >= 1.0.18" in message
    assert "lacks crypto_scalarmult_ed25519_base_noclamp" in message


def test_minimal_libsodium_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bindings, "has_crypto_scalarmult_ed25519", False)
    with pytest.raises(ImportError, match="minimal libsodium"):
        capabilities.check_sodium()


def test_report_names_the_backends() -> None:
    report = capabilities.report()
    assert report["mlkem_backend"] in {"openssl", "kyber-py"}
    assert set(report) == {"pynacl", "cryptography", "mlkem_backend", "sqlite"}
