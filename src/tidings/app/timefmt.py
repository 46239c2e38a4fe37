"""How times read in the app: "14:05" today, "Tue" this week, "24/11/26" before; day separators
say "Today", "Yesterday" or the date."""

from __future__ import annotations

import datetime as dt


def local(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000).astimezone()


def clock(ms: int) -> str:
    return local(ms).strftime("%H:%M")


def list_stamp(ms: int, now: dt.datetime | None = None) -> str:
    """The time column of the chat list."""
    when = local(ms)
    today = (now or dt.datetime.now().astimezone()).date()
    days = (today - when.date()).days
    if days <= 0:
        return when.strftime("%H:%M")
    if days == 1:
        return "Yesterday"
    if days < 7:
        return when.strftime("%a")
    return when.strftime("%d/%m/%y")


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
    if day.year == today.year:
        return day.strftime("%A %d %B").replace(" 0", " ")
    return day.strftime("%d %B %Y").lstrip("0")
