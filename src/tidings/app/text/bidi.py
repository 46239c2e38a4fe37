"""The bidirectional algorithm (UAX #9) for chat text: levels and visual order.

Pure Python on :func:`unicodedata.bidirectional`, over grapheme clusters (a cluster takes the
class of its first code point, which is what rule W1 does for its marks). Implemented: the
paragraph direction from the first strong character (P2/P3), the weak-type rules W1-W7 for
numbers and their separators, the neutral rules N1/N2, the implicit levels I1/I2, trailing
whitespace at the paragraph level (L1) and the reordering L2. Left out: the explicit
embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069), which are treated as
neutrals — chat clients rarely send them, and the text still comes out readable.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_STRONG_R = frozenset({"R", "AL"})
_NEUTRAL = frozenset({"B", "S", "WS", "ON", "BN", "LRE", "LRO", "RLE", "RLO", "PDF"})
_NEUTRAL |= frozenset({"LRI", "RLI", "FSI", "PDI", ""})

#: Paired brackets and other mirrored characters drawn as their mirror image in RTL runs
#: (only needed where the layout engine does not mirror them itself).
MIRRORS: dict[str, str] = dict(
    zip("()[]{}<>«»‹›⁅⁆≤≥", ")(][}{><»«›‹⁆⁅≥≤", strict=True)  # noqa: RUF001
)


def bidi_class(cluster: str) -> str:
    return unicodedata.bidirectional(cluster[0]) if cluster else "ON"


def paragraph_level(classes: Sequence[str], default: int = 0) -> int:
    """0 (left to right) or 1 (right to left): the direction of the first strong character."""
    for cls in classes:
        if cls == "L":
            return 0
        if cls in _STRONG_R:
            return 1
    return default


def is_rtl(text: str) -> bool:
    """Whether a paragraph of `text` reads right to left (its first strong character is R/AL)."""
    return paragraph_level([unicodedata.bidirectional(c) for c in text]) == 1


def resolve_levels(classes: Sequence[str], base: int) -> list[int]:
    """The embedding level of each item (cluster) of one paragraph."""
    types = ["ON" if t == "NSM" else t for t in classes]
    # W1: marks take the class of what they follow (clusters already carry their base)
    n = len(types)
    # W2: European numbers after Arabic letters are Arabic numbers; W3: AL -> R
    last_strong = "R" if base else "L"
    for i, t in enumerate(types):
        if t in ("L", "R", "AL"):
            last_strong = t
        elif t == "EN" and last_strong == "AL":
            types[i] = "AN"
    types = ["R" if t == "AL" else t for t in types]
    # W4: one separator between two numbers of the same kind joins them
    for i in range(1, n - 1):
        if types[i] == "ES" and types[i - 1] == types[i + 1] == "EN":
            types[i] = "EN"
        elif types[i] == "CS" and types[i - 1] == types[i + 1] and types[i - 1] in ("EN", "AN"):
            types[i] = types[i - 1]
    # W5: terminators (%, currency signs) next to European numbers are numbers
    i = 0
    while i < n:
        if types[i] == "ET":
            j = i
            while j < n and types[j] == "ET":
                j += 1
            if (i > 0 and types[i - 1] == "EN") or (j < n and types[j] == "EN"):
                for k in range(i, j):
                    types[k] = "EN"
            i = j
        else:
            i += 1
    # W6: the remaining separators and terminators are neutral
    types = ["ON" if t in ("ES", "ET", "CS") else t for t in types]
    # W7: European numbers after an L context are L
    last_strong = "R" if base else "L"
    for i, t in enumerate(types):
        if t in ("L", "R"):
            last_strong = t
        elif t == "EN" and last_strong == "L":
            types[i] = "L"

    # N1/N2: neutrals between two of the same direction take it, others the base direction
    def direction(t: str) -> str:
        return "R" if t in ("R", "AN", "EN") else t

    i = 0
    while i < n:
        if types[i] in _NEUTRAL:
            j = i
            while j < n and types[j] in _NEUTRAL:
                j += 1
            before = direction(types[i - 1]) if i > 0 else ("R" if base else "L")
            after = direction(types[j]) if j < n else ("R" if base else "L")
            resolved = before if before == after else ("R" if base else "L")
            for k in range(i, j):
                types[k] = resolved
            i = j
        else:
            i += 1
    # I1/I2
    levels: list[int] = []
    for t in types:
        if base % 2 == 0:
            levels.append(base + (1 if t == "R" else 2 if t in ("AN", "EN") else 0))
        else:
            levels.append(base + (1 if t in ("L", "EN", "AN") else 0))
    return levels


def line_levels(levels: Sequence[int], classes: Sequence[str], base: int) -> list[int]:
    """L1: whitespace at the end of a line goes back to the paragraph level."""
    out = list(levels)
    i = len(out) - 1
    while i >= 0 and classes[i] in ("WS", "S", "B", "BN"):
        out[i] = base
        i -= 1
    return out


def visual_order(levels: Sequence[int]) -> list[int]:
    """L2: the logical indices of one line's items from left to right."""
    order = list(range(len(levels)))
    if not levels:
        return order
    highest = max(levels)
    lowest_odd = min((lv for lv in levels if lv % 2), default=highest + 1)
    for level in range(highest, lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = order[i:j][::-1]
                i = j
            else:
                i += 1
    return order
