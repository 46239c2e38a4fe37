"""Grapheme clusters and emoji sequences, in pure Python (so it runs unchanged on Android).

Part of the client core (reactions are checked with :func:`is_emoji`); the app's text engine
uses it through ``tidings.app.text.segment``.

A cluster is what the user sees as one character: a base with its combining marks, a Hangul
syllable, CR LF, or one emoji however many code points it takes — keycaps (``#️⃣``),
skin tones (``👍🏽``), flags (two regional indicators, ``🇩🇪``), tag sequences (``🏴󠁧󠁢󠁳󠁣󠁴󠁿``) and
ZWJ sequences (``👩‍👩‍👧‍👦``). This follows the extended grapheme cluster rules of UAX #29 closely
enough for chat text (Indic conjuncts across a virama are kept as separate clusters, which
only matters for where a line may break).
"""

from __future__ import annotations

import unicodedata

ZWJ = 0x200D
VS15 = 0xFE0E  # text presentation
VS16 = 0xFE0F  # emoji presentation
KEYCAP = 0x20E3
_EXTEND_CATEGORIES = frozenset({"Mn", "Me", "Mc"})


def is_regional_indicator(cp: int) -> bool:
    return 0x1F1E6 <= cp <= 0x1F1FF


def is_skin_tone(cp: int) -> bool:
    return 0x1F3FB <= cp <= 0x1F3FF


def is_tag(cp: int) -> bool:
    return 0xE0020 <= cp <= 0xE007F


def _extends(cp: int) -> bool:
    """Whether `cp` belongs to the cluster before it (marks, selectors, modifiers, tags)."""
    if cp in (ZWJ, VS15, VS16, KEYCAP) or is_skin_tone(cp) or is_tag(cp):
        return True
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:  # variation selectors
        return True
    return unicodedata.category(chr(cp)) in _EXTEND_CATEGORIES


def _pictographic(cp: int) -> bool:
    """Roughly Extended_Pictographic: what a ZWJ glues into an emoji sequence."""
    return cp >= 0x1F000 or 0x2300 <= cp <= 0x2BFF or cp in (0x00A9, 0x00AE, 0x203C, 0x2049)


def _hangul_joins(prev: int, cp: int) -> bool:
    # L + (L|V|LV|LVT), (LV|V) + (V|T), (LVT|T) + T  (conjoining jamo)
    def kind(c: int) -> str:
        if 0x1100 <= c <= 0x115F or 0xA960 <= c <= 0xA97C:
            return "L"
        if 0x1160 <= c <= 0x11A7 or 0xD7B0 <= c <= 0xD7C6:
            return "V"
        if 0x11A8 <= c <= 0x11FF or 0xD7CB <= c <= 0xD7FB:
            return "T"
        if 0xAC00 <= c <= 0xD7A3:
            return "LV" if (c - 0xAC00) % 28 == 0 else "LVT"
        return ""

    a, b = kind(prev), kind(cp)
    if a == "L":
        return b in ("L", "V", "LV", "LVT")
    if a in ("LV", "V"):
        return b in ("V", "T")
    if a in ("LVT", "T"):
        return b == "T"
    return False


def clusters(text: str) -> list[str]:
    """Split `text` into grapheme clusters."""
    out: list[str] = []
    current: list[str] = []
    prev = -1
    ri_pending = False  # the current cluster is a lone regional indicator
    after_zwj = False
    for ch in text:
        cp = ord(ch)
        join = False
        if current:
            if prev == 0x0D and cp == 0x0A:
                join = True
            elif prev in (0x0D, 0x0A) or cp in (0x0D, 0x0A):
                join = False
            else:
                join = (
                    _extends(cp)
                    or (after_zwj and _pictographic(cp))
                    or (is_regional_indicator(cp) and ri_pending)
                    or _hangul_joins(prev, cp)
                )
        if not join and current:
            out.append("".join(current))
            current = []
        if not current:
            ri_pending = is_regional_indicator(cp)
        elif is_regional_indicator(cp):
            ri_pending = False
        current.append(ch)
        after_zwj = cp == ZWJ
        prev = cp
    if current:
        out.append("".join(current))
    return out


#: Emoji whose default presentation is the emoji one although they sit below U+1F000
#: (Emoji_Presentation=Yes in the BMP): they show as pictures even without U+FE0F.
_BMP_EMOJI_PRESENTATION: tuple[tuple[int, int], ...] = (
    (0x231A, 0x231B), (0x23E9, 0x23EC), (0x23F0, 0x23F0), (0x23F3, 0x23F3),
    (0x25FD, 0x25FE), (0x2614, 0x2615), (0x2648, 0x2653), (0x267F, 0x267F),
    (0x2693, 0x2693), (0x26A1, 0x26A1), (0x26AA, 0x26AB), (0x26BD, 0x26BE),
    (0x26C4, 0x26C5), (0x26CE, 0x26CE), (0x26D4, 0x26D4), (0x26EA, 0x26EA),
    (0x26F2, 0x26F3), (0x26F5, 0x26F5), (0x26FA, 0x26FA), (0x26FD, 0x26FD),
    (0x2705, 0x2705), (0x270A, 0x270B), (0x2728, 0x2728), (0x274C, 0x274C),
    (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757), (0x2795, 0x2797),
    (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
)  # fmt: skip


def wants_emoji_picture(cluster: str) -> bool:
    """Whether a cluster asks to be drawn as a (colour) emoji picture rather than with a font.

    Pictures are used for anything from U+1F000 on, for sequences (ZWJ, keycap, skin tone,
    flag, U+FE0F), for the BMP characters whose default presentation is emoji, and for the
    dingbats and miscellaneous symbols (U+2300 on) a messenger's users mean as emoji
    (``❤``, ``✔``) — but never when U+FE0E asks for text, and never for plain digits, ``#``,
    ``*``, ``©``, arrows and the like unless U+FE0F or a keycap follows them."""
    cps = [ord(c) for c in cluster]
    if VS15 in cps:
        return False
    if VS16 in cps or KEYCAP in cps or ZWJ in cps:
        return True
    first = cps[0]
    if first >= 0x1F000 or any(is_skin_tone(c) for c in cps[1:]):
        return True
    if any(lo <= first <= hi for lo, hi in _BMP_EMOJI_PRESENTATION):
        return True
    return 0x2300 <= first <= 0x2BFF


def is_emoji(text: str) -> bool:
    """Whether ``text`` is exactly one emoji: a single grapheme cluster drawn as an emoji
    picture (ZWJ sequences, skin tones, flags, keycaps and tag sequences included). Plain
    letters, digits, symbols asked for as text (U+FE0E) and anything longer are not."""
    if not text or len(text) > 32:
        return False
    parts = clusters(text)
    if len(parts) != 1 or not wants_emoji_picture(parts[0]):
        return False
    cps = [ord(c) for c in parts[0]]
    if cps[0] < 0x2300:  # a keycap (``#️⃣``), or a symbol asked for as emoji (``©️``)
        base = parts[0][0]
        keycap = base in "0123456789#*" and KEYCAP in cps
        symbol = VS16 in cps and (
            unicodedata.category(base) in ("So", "Sm") or cps[0] in (0x203C, 0x2049)
        )
        if not keycap and not symbol:
            return False
    if is_regional_indicator(cps[0]):
        return len(cps) == 2 and is_regional_indicator(cps[1])  # a flag is a pair
    # anything after the first code point must belong to an emoji sequence
    return all(
        c in (ZWJ, VS16, KEYCAP) or is_skin_tone(c) or is_tag(c) or _pictographic(c)
        for c in cps[1:]
    )


def emoji_key(cluster: str) -> str:
    """The lookup key of an emoji sequence: its code points in hex, U+FE0F left out."""
    return "-".join(f"{ord(c):x}" for c in cluster if ord(c) != VS16)
