"""How strong a vault passphrase looks, for the UI; the vault itself only enforces a length.

Guarantees, first: an estimate, never a proof. It runs on the device, the passphrase goes
nowhere. With ``zxcvbn`` (a dependency) the estimate knows common passwords, names, dictionary
words, keyboard patterns, dates and the user's own inputs (username, server name); only the
first 72 characters are scored (zxcvbn's limit), which can only under-estimate a longer one.
Without it (an import failure), a character-class entropy is used: an *upper* bound that knows
no dictionary, so it demands the top score. The hard floor is
:data:`tidings.crypto.vault.MIN_PASSPHRASE_LENGTH` characters, which
:func:`~tidings.crypto.vault.enrol` enforces whatever the UI shows.

Every guess an attacker makes costs one Argon2id at the vault's params, so a score of 3
(about 10^10 guesses) is the acceptable minimum here, where an unsalted fast hash would need more.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidings.crypto.vault import MIN_PASSPHRASE_LENGTH

__all__ = ["MIN_ACCEPTABLE_SCORE", "PassphraseStrength", "estimate_passphrase"]

MIN_ACCEPTABLE_SCORE = 3
_ZXCVBN_MAX = 72
# zxcvbn's score thresholds, in log10(guesses).
_THRESHOLDS = (3.0, 6.0, 8.0, 10.0)


@dataclass(frozen=True, slots=True)
class PassphraseStrength:
    """An estimate: ``score`` 0 (trivial) to 4 (strong), as zxcvbn defines it."""

    score: int
    guesses_log10: float
    length: int
    acceptable: bool
    warning: str
    suggestions: tuple[str, ...]
    #: "zxcvbn", or "entropy" for the fallback
    method: str


def _score(guesses_log10: float) -> int:
    return sum(1 for threshold in _THRESHOLDS if guesses_log10 >= threshold)


def _entropy_log10(passphrase: str) -> float:
    """log10 of a character-class brute force, capped by the number of distinct characters."""
    pool = 0
    if any(c.islower() and c.isascii() for c in passphrase):
        pool += 26
    if any(c.isupper() and c.isascii() for c in passphrase):
        pool += 26
    if any(c.isdigit() and c.isascii() for c in passphrase):
        pool += 10
    if any(c.isascii() and not c.isalnum() for c in passphrase):
        pool += 33
    if any(not c.isascii() for c in passphrase):
        pool += 100
    effective = min(len(passphrase), 2 * len(set(passphrase)))
    return effective * math.log10(pool) if pool else 0.0


def _zxcvbn(passphrase: str, user_inputs: Sequence[str]) -> dict[str, Any] | None:
    try:
        from zxcvbn import zxcvbn  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - zxcvbn is a dependency
        return None
    result: dict[str, Any] = zxcvbn(passphrase[:_ZXCVBN_MAX], user_inputs=list(user_inputs))
    return result


def estimate_passphrase(passphrase: str, user_inputs: Sequence[str] = ()) -> PassphraseStrength:
    """Estimate ``passphrase``'s strength; ``user_inputs`` are words an attacker would try first
    (the username, the server's name)."""
    passphrase = unicodedata.normalize("NFC", passphrase)
    length = len(passphrase)
    result = _zxcvbn(passphrase, user_inputs) if passphrase else None
    if result is not None:
        guesses_log10 = float(result["guesses_log10"])
        score = int(result["score"])
        feedback = result.get("feedback") or {}
        warning = str(feedback.get("warning") or "")
        suggestions = tuple(str(s) for s in feedback.get("suggestions") or ())
        method, needed = "zxcvbn", MIN_ACCEPTABLE_SCORE
    else:
        guesses_log10 = _entropy_log10(passphrase)
        lowered = passphrase.casefold()
        if any(word and word.casefold() in lowered for word in user_inputs):
            guesses_log10 = min(guesses_log10, 6.0)
        score = _score(guesses_log10)
        warning, suggestions = "", ("Use several unrelated words.",) if score < 4 else ()
        method, needed = "entropy", 4
    if length < MIN_PASSPHRASE_LENGTH:
        warning = warning or f"Use at least {MIN_PASSPHRASE_LENGTH} characters."
    return PassphraseStrength(
        score=score,
        guesses_log10=guesses_log10,
        length=length,
        acceptable=length >= MIN_PASSPHRASE_LENGTH and score >= needed,
        warning=warning,
        suggestions=suggestions,
        method=method,
    )
