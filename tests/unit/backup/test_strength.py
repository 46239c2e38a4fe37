"""The passphrase estimate for the UI."""

from __future__ import annotations

import pytest

from tidings.client.backup import strength
from tidings.client.backup.strength import estimate_passphrase
from tidings.crypto.vault import MIN_PASSPHRASE_LENGTH


def test_common_passwords_are_not_acceptable() -> None:
    for weak in ("password123456", "qwertyuiop123", "aaaaaaaaaaaaaaaa", "1234567890123"):
        result = estimate_passphrase(weak)
        assert result.method == "zxcvbn"
        assert not result.acceptable, weak
        assert result.score <= 2


def test_a_long_random_passphrase_is_acceptable() -> None:
    result = estimate_passphrase("velvet trombone quarry nebula 47")
    assert result.acceptable
    assert result.score == 4
    assert result.guesses_log10 > 10


def test_too_short_is_never_acceptable() -> None:
    result = estimate_passphrase("Zq8#vL2!")
    assert result.length < MIN_PASSPHRASE_LENGTH
    assert not result.acceptable
    assert result.warning


def test_user_inputs_weaken_the_estimate() -> None:
    plain = estimate_passphrase("alicewonderland2024")
    informed = estimate_passphrase("alicewonderland2024", ["alicewonderland"])
    assert informed.guesses_log10 < plain.guesses_log10


def test_long_passphrases_are_estimated_without_error() -> None:
    result = estimate_passphrase("word " * 100)
    assert result.length == 500


def test_the_empty_passphrase() -> None:
    result = estimate_passphrase("")
    assert (result.score, result.acceptable) == (0, False)


def test_the_fallback_is_an_entropy_upper_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strength, "_zxcvbn", lambda *_args: None)
    weak = estimate_passphrase("aaaaaaaaaaaaaaaa")
    assert weak.method == "entropy"
    assert not weak.acceptable
    strong = estimate_passphrase("Tq7#mK2$vL9@pW4!xR")
    assert strong.score == 4 and strong.acceptable
    named = estimate_passphrase("Alice-in-the-Wonderland-7", ["alice"])
    assert not named.acceptable
    short = estimate_passphrase("Tq7#mK2$")
    assert not short.acceptable
    assert estimate_passphrase("ééééééééééééééé").method == "entropy"
