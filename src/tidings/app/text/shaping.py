"""Arabic joining without a shaping engine: letters swapped for their presentation forms.

Where Pillow has no libraqm (python-for-android's Pillow recipe builds without it) the
text is laid out glyph by glyph, so the joining forms must be picked here. The tables come
from :mod:`unicodedata` itself: the names of the Arabic Presentation Forms-B block say which
letter each form belongs to and whether it is isolated, final, initial or medial, so a
letter with an initial form joins on both sides and one with only final forms joins to the
right. Lam-alef ligatures are applied as well. Runs stay in logical order here; the caller
reverses them for display.
"""

from __future__ import annotations

import unicodedata
from functools import cache

_FORMS = ("ISOLATED", "FINAL", "INITIAL", "MEDIAL")
ZWJ = "\u200d"
TATWEEL = "\u0640"
_LAM_ALEF = {"\u0622": 0xFEF5, "\u0623": 0xFEF7, "\u0625": 0xFEF9, "\u0627": 0xFEFB}


@cache
def _tables() -> dict[str, dict[str, str]]:
    forms: dict[str, dict[str, str]] = {}
    for cp in list(range(0xFE70, 0xFEFD)) + list(range(0xFB50, 0xFC00)):
        name = unicodedata.name(chr(cp), "")
        for form in _FORMS:
            suffix = f" {form} FORM"
            if name.endswith(suffix):
                base_name = name[: -len(suffix)]
                try:
                    base = unicodedata.lookup(base_name)
                except KeyError:
                    continue
                forms.setdefault(base, {}).setdefault(form, chr(cp))
    return forms


def joins_both(ch: str) -> bool:
    """Dual-joining letters (they have initial and medial forms; tatweel and ZWJ join too)."""
    if ch in (TATWEEL, ZWJ):
        return True
    f = _tables().get(ch)
    return f is not None and "INITIAL" in f


def joins_right(ch: str) -> bool:
    """Letters that join to the letter before them (every joining letter does)."""
    if ch in (TATWEEL, ZWJ):
        return True
    f = _tables().get(ch)
    return f is not None and "FINAL" in f


def _transparent(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Me")


def reshape(text: str) -> str:
    """`text` (logical order) with each Arabic letter replaced by its contextual form."""
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if not _transparent(c)]
    out = list(chars)
    tables = _tables()
    for pos, i in enumerate(letters):
        ch = chars[i]
        forms = tables.get(ch)
        if not forms:
            continue
        prev = chars[letters[pos - 1]] if pos > 0 else ""
        nxt = chars[letters[pos + 1]] if pos + 1 < len(letters) else ""
        joined_before = bool(prev) and joins_both(prev) and joins_right(ch)
        joined_after = bool(nxt) and joins_both(ch) and joins_right(nxt)
        form = {
            (False, False): "ISOLATED",
            (True, False): "FINAL",
            (False, True): "INITIAL",
            (True, True): "MEDIAL",
        }[(joined_before, joined_after)]
        out[i] = forms.get(form) or forms.get("ISOLATED") or ch
    return _lam_alef("".join(out), text)


def _lam_alef(shaped: str, original: str) -> str:
    result: list[str] = []
    i = 0
    while i < len(original):
        ch = original[i]
        if ch == "\u0644" and i + 1 < len(original) and original[i + 1] in _LAM_ALEF:
            lam_form = unicodedata.name(shaped[i], "")
            final = lam_form.endswith("MEDIAL FORM") or lam_form.endswith("FINAL FORM")
            result.append(chr(_LAM_ALEF[original[i + 1]] + (1 if final else 0)))
            i += 2
            continue
        result.append(shaped[i])
        i += 1
    return "".join(result)
