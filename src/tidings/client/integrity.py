"""The profile database's integrity check, off the path of opening it.

``PRAGMA quick_check`` reads every page: about 1.5 s for a profile of a million messages, far
too long to keep the chat list waiting at every start. :meth:`LocalStore.__init__` with
``integrity="later"`` (what :meth:`Client.open` does) opens without it, and
:func:`check_in_background` runs it a few seconds later on a connection of its own in a daemon
thread. Damage it
finds is written next to the database (``tidings.db.damaged``): the next open runs the check
before anything else and refuses the profile with :class:`~tidings.client.errors.ProfileCorrupt`
while the damage is there. Damage that the open itself reads (a file that is not a database, a
malformed schema or account page) is refused at once, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("tidings.client")

#: appended to the database's path: the marker a failed background check leaves
MARKER_SUFFIX = ".damaged"
#: seconds after the open that the check starts: the chat list and the first sync come first
START_DELAY = 5.0


def problems(db: sqlite3.Connection) -> list[str]:
    """What ``PRAGMA quick_check`` finds wrong (at most three lines); [] when all is well."""
    found = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
    return [] if found == ["ok"] else found


def marker(path: Path | str) -> Path:
    return Path(os.fspath(path) + MARKER_SUFFIX)


def check_in_background(path: Path | str, delay: float = START_DELAY) -> threading.Timer:
    """Run the check on the database at ``path`` in a daemon thread, ``delay`` seconds from
    now; damage leaves the marker. Being unable to look (the file went away, it is locked)
    leaves nothing."""
    timer = threading.Timer(delay, _check, args=(Path(path),))
    timer.name, timer.daemon = "tidings-integrity", True
    timer.start()
    return timer


def _check(path: Path) -> None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error:
        return
    try:
        found = problems(db)
    except sqlite3.DatabaseError as exc:
        text = str(exc).lower()
        if not any(word in text for word in ("not a database", "malformed", "corrupt")):
            return  # locked, gone: not damage
        found = [str(exc)]
    finally:
        db.close()
    if found:
        log.error("the profile database %s is damaged: %s", path, "; ".join(found))
        with contextlib.suppress(OSError):
            fd = os.open(marker(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write("; ".join(found))
