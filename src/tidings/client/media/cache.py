"""A local download cache for attachments, bounded in bytes, evicting the least recently used.

Guarantees: the cache directory is created 0700 and every entry is written 0600 through a private
temporary file (``O_CREAT | O_EXCL``, mode 0600 from the first byte) that is renamed into place
only once complete — a crash never leaves a half-written entry under a real name, and no other
local user can read an entry at any time. The cache stores whatever bytes the runtime gives it
(ciphertext, or plaintext after :func:`tidings.crypto.attachment.decrypt_stream` verified it);
it lives in the profile directory and never sends anything anywhere.

Recency is the file's modification time (refreshed on every hit), so the LRU order survives a
restart. The total never exceeds ``max_bytes`` after a :meth:`MediaCache.put` returns; an entry
larger than the whole budget is refused with :class:`.errors.MediaTooLargeError`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Final

from .errors import MediaTooLargeError

__all__ = ["MediaCache"]

_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TMP_PREFIX: Final = ".tmp-"
_COPY_CHUNK: Final = 1024 * 1024


class MediaCache:
    """LRU cache of files named by key (a blob id) under ``directory``, at most ``max_bytes``."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._dir = Path(directory)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        self._max = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        self._total = 0
        self._load()

    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._total

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def _load(self) -> None:
        found: list[tuple[float, str, int]] = []
        for entry in os.scandir(self._dir):
            if entry.name.startswith(_TMP_PREFIX):
                os.unlink(entry.path)  # left over by a crash mid-write
            elif _KEY.match(entry.name) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                found.append((st.st_mtime, entry.name, st.st_size))
        for _, key, size in sorted(found):
            self._entries[key] = size
            self._total += size
        with self._lock:
            self._evict(keep=None)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("cache keys are URL-safe ids")
        return self._dir / key

    def get(self, key: str) -> Path | None:
        """The path of a cached entry (now the most recently used), or ``None``."""
        path = self._path(key)
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            try:
                now = time.time()
                os.utime(path, (now, now))
            except FileNotFoundError:
                self._total -= self._entries.pop(key)
                return None
            return path

    def read(self, key: str) -> bytes | None:
        """The bytes of a cached entry, or ``None``."""
        path = self.get(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes | IO[bytes]) -> Path:
        """Store ``data`` (bytes or a readable stream) under ``key``; evicts as needed."""
        path = self._path(key)
        fd = -1
        tmp = self._dir / f"{_TMP_PREFIX}{key}-{os.urandom(6).hex()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                fd = -1
                if isinstance(data, bytes | bytearray | memoryview):
                    if len(data) > self._max:
                        raise MediaTooLargeError("entry larger than the whole cache")
                    f.write(data)
                else:
                    written = 0
                    while chunk := data.read(_COPY_CHUNK):
                        written += len(chunk)
                        if written > self._max:
                            raise MediaTooLargeError("entry larger than the whole cache")
                        f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
                size = f.tell()
            with self._lock:
                os.replace(tmp, path)
                if key in self._entries:
                    self._total -= self._entries.pop(key)
                self._entries[key] = size
                self._total += size
                self._evict(keep=key)
            return path
        finally:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, source: str | os.PathLike[str]) -> Path:
        """Copy the file at ``source`` into the cache under ``key``."""
        with open(source, "rb") as f:
            return self.put(key, f)

    def delete(self, key: str) -> bool:
        """Remove an entry; ``True`` if it was there."""
        path = self._path(key)
        with self._lock:
            size = self._entries.pop(key, None)
            if size is None:
                return False
            self._total -= size
            path.unlink(missing_ok=True)
            return True

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            for key in list(self._entries):
                (self._dir / key).unlink(missing_ok=True)
            self._entries.clear()
            self._total = 0

    def _evict(self, keep: str | None) -> None:
        while self._total > self._max and self._entries:
            oldest = next(iter(self._entries))
            if oldest == keep:
                if len(self._entries) == 1:
                    break
                self._entries.move_to_end(oldest)
                continue
            self._total -= self._entries.pop(oldest)
            (self._dir / oldest).unlink(missing_ok=True)

    def disk_usage(self) -> int:
        """Bytes the cache directory holds on disk (for diagnostics)."""
        return sum(e.stat().st_size for e in os.scandir(self._dir) if e.is_file())
