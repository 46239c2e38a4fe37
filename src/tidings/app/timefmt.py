"""How times read in the app, in the user's locale: "3:05 PM" (en_US) or "15:05" (de_DE) today,
the weekday this week, the short date before; day separators say "Today", "Yesterday" or the
date ("Tuesday, November 24" / "Dienstag, 24. November").

Formats come from CLDR through Babel (pure Python) when it is installed, for the locale of
:func:`app_locale`: ``LC_ALL``, ``LC_TIME`` or ``LANG`` from the environment, else Python's
``locale.getlocale()``; without Babel, or for a locale it does not know, a fixed 24-hour
format is used.
"""

from __future__ import annotations

import datetime as dt
import locale as _locale
import os
from functools import cache
from typing import Any

try:  # pragma: no cover - exercised by which one is installed
    from babel import Locale, UnknownLocaleError
    from babel import dates as _dates

    HAVE_BABEL = True
except ImportError:  # pragma: no cover
    HAVE_BABEL = False

#: set by :func:`set_locale` (tests, a future language setting); None: from the system
_override: str | None = None


def _system_locale() -> str | None:
    for var in ("LC_ALL", "LC_TIME", "LANG"):
        value = os.environ.get(var, "")
        name = value.split(".")[0].split("@")[0]
        if name and name not in ("C", "POSIX"):
            return name
    try:
        system = _locale.getlocale(_locale.LC_TIME)[0] or _locale.getlocale()[0]
    except (ValueError, TypeError):
        return None
    return system if system and system not in ("C", "POSIX") else None


def set_locale(name: str | None) -> None:
    """Format for locale `name` ("de_DE") from now on; None: the system's again."""
    global _override
    _override = name
    _babel_locale.cache_clear()


def app_locale() -> str:
    """The locale times are formatted for ("en_US" when nothing says otherwise)."""
    return _override or _system_locale() or "en_US"


@cache
def _babel_locale() -> Any:
    if not HAVE_BABEL:
        return None
    try:
        return Locale.parse(app_locale().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def _plain(text: str) -> str:
    # CLDR puts narrow no-break spaces before AM/PM; not every font draws them
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def local(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000).astimezone()


def format_clock(when: dt.datetime | dt.time) -> str:
    """Hours and minutes as the locale writes them (12 or 24 hours)."""
    loc = _babel_locale()
    if loc is None:
        return when.strftime("%H:%M")
    return _plain(_dates.format_time(when, format="short", locale=loc))


def clock(ms: int) -> str:
    return format_clock(local(ms))


def short_date(day: dt.date) -> str:
    loc = _babel_locale()
    if loc is None:
        return day.strftime("%d/%m/%y")
    return _plain(_dates.format_date(day, format="short", locale=loc))


def weekday(day: dt.date) -> str:
    loc = _babel_locale()
    if loc is None:
        return day.strftime("%a")
    return _plain(_dates.format_date(day, format="EEE", locale=loc))


def date_time(ms: int) -> str:
    """A full moment ("Nov 24, 2026, 3:05 PM"): the message info screen, edit history."""
    when = local(ms)
    loc = _babel_locale()
    if loc is None:
        return when.strftime("%d %b %Y, %H:%M")
    return f"{_plain(_dates.format_date(when, format='medium', locale=loc))}, {format_clock(when)}"


def list_stamp(ms: int, now: dt.datetime | None = None) -> str:
    """The time column of the chat list."""
    when = local(ms)
    today = (now or dt.datetime.now().astimezone()).date()
    days = (today - when.date()).days
    if days <= 0:
        return format_clock(when)
    if days == 1:
        return "Yesterday"
    if days < 7:
        return weekday(when.date())
    return short_date(when.date())


def day_key(ms: int) -> dt.date:
    return local(ms).date()


def day_label(day: dt.date, now: dt.datetime | None = None) -> str:
    """The text of a day separator in a chat."""
    today = (now or dt.datetime.now().astimezone()).date()
    days = (today - day).days
    if days == 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    loc = _babel_locale()
    if loc is None:
        if day.year == today.year:
            return day.strftime("%A %d %B").replace(" 0", " ")
        return day.strftime("%d %B %Y").lstrip("0")
    if day.year == today.year:
        full_day = _dates.format_date(day, format="EEEE", locale=loc)
        return _plain(f"{full_day}, {_dates.format_skeleton('MMMMd', day, locale=loc)}")
    return _plain(_dates.format_date(day, format="long", locale=loc))
