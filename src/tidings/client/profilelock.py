"""One process at a time per profile: an OS file lock on ``<profile>/tidings.lock``.

Two processes on one profile (the app and its push service, two CLI commands) would use one
device token: the server lets the newer WebSocket replace the older (close 4409), the older
reconnects and replaces the newer, and so on. So a :class:`~tidings.client.api.Client` holds
the profile's lock for its lifetime: ``fcntl.flock`` on POSIX (Android included),
``msvcrt.locking`` on Windows. The OS drops the lock when the process dies, however it dies:
there is no stale lock to clean up. The holder writes its pid into the file, so the
:class:`ProfileInUse` a second process gets after waiting (:data:`WAIT`) can name it.

Within one process the lock is shared by reference count: clients of one process on one
profile are that process's business (tests replace a connection that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

from .errors import ProfileInUse

#: the lock file in the profile directory
LOCK_NAME = "tidings.lock"
#: seconds a second process waits for the profile before ProfileInUse
WAIT = 2.0
#: where the holder's pid is written (Windows locks byte 0, which then cannot be read)
_PID_OFFSET = 16
_POLL = 0.05

_held: dict[Path, ProfileLock] = {}
_guard = threading.Lock()


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def holder(profile: Path) -> int | None:
    """The pid written by the last holder of ``profile``'s lock, if any."""
    try:
        with open(Path(profile) / LOCK_NAME, "rb") as file:
            file.seek(_PID_OFFSET)
            return int(file.read(32).strip(b"\0 \n") or b"x")
    except (OSError, ValueError):
        return None


class ProfileLock:
    """The lock on one profile held by this process (see :func:`acquire`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._count = 1

    @property
    def held(self) -> bool:
        return self._count > 0

    def release(self) -> None:
        """Drop one reference; the last one unlocks the file. Idempotent past zero."""
        with _guard:
            if self._count == 0:
                return
            self._count -= 1
            if self._count:
                return
            _held.pop(self.path, None)
            with contextlib.suppress(OSError):
                _unlock(self._fd)
            os.close(self._fd)


def _take(path: Path) -> ProfileLock | None:
    with _guard:
        mine = _held.get(path)
        if mine is not None:
            mine._count += 1
            return mine
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            return None
        os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".ljust(16).encode())
        lock = ProfileLock(path, fd)
        _held[path] = lock
        return lock


def _key(profile: Path) -> Path:
    return (Path(profile).resolve() / LOCK_NAME).absolute()


def acquire(profile: Path, wait: float = WAIT) -> ProfileLock:
    """Hold ``profile`` for this process, waiting up to ``wait`` seconds for another process
    to let go; :class:`ProfileInUse` (with the holder's pid) otherwise. Blocks: for the
    moment of opening a profile (at most ``wait``)."""
    path = _key(profile)
    deadline = time.monotonic() + wait
    while (lock := _take(path)) is None:
        if time.monotonic() >= deadline:
            raise ProfileInUse(os.fspath(profile), holder(profile))
        time.sleep(_POLL)
    return lock


async def acquire_async(profile: Path, wait: float = WAIT) -> ProfileLock:
    """:func:`acquire` without blocking the event loop while waiting."""
    path = _key(profile)
    deadline = time.monotonic() + wait
    while (lock := _take(path)) is None:
        if time.monotonic() >= deadline:
            raise ProfileInUse(os.fspath(profile), holder(profile))
        await asyncio.sleep(_POLL)
    return lock
