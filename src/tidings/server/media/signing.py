"""Presigned-URL signatures of the local blob store: HMAC-SHA256 with a rotatable key ring.

Guarantees: a signature covers the method, the blob id, the content length, the expiry and the
chunk offset, so changing any of them (or the key id) invalidates the URL; signatures are compared
in constant time (:func:`hmac.compare_digest`). The keys live in one file in the data directory,
written 0600 atomically. :meth:`KeyRing.rotate` makes a new signing key; a retired key keeps
verifying for as long as a URL it signed can live (``max_ttl_s``) and is then forgotten.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["KeyRing", "SignedParams"]

_DOMAIN: Final = b"tidings-blob-url-v1"
_KEY_BYTES: Final = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SignedParams:
    """What one URL grants: ``method`` on ``blob_id`` for ``length`` bytes at ``offset``."""

    method: str
    blob_id: str
    length: int
    expires: int
    offset: int

    def message(self) -> bytes:
        fields = (self.method.upper(), self.blob_id, self.length, self.expires, self.offset)
        return b"\n".join([_DOMAIN, *(str(f).encode() for f in fields)])


@dataclass(slots=True)
class _Key:
    kid: str
    secret: bytes
    created_at: float
    retired_at: float | None


class KeyRing:
    """The URL signing keys, persisted in ``path`` (0600)."""

    def __init__(
        self, path: Path, *, max_ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = path
        self._max_ttl = max_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[_Key] = []
        if path.exists():
            self._load()
        if not self._keys or self._keys[-1].retired_at is not None:
            self.rotate()

    def _load(self) -> None:
        raw = json.loads(self._path.read_text())
        self._keys = [
            _Key(k["kid"], _unb64(k["secret"]), float(k["created_at"]), k.get("retired_at"))
            for k in raw["keys"]
        ]

    def _save(self) -> None:
        data = {
            "keys": [
                {
                    "kid": k.kid,
                    "secret": _b64(k.secret),
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                }
                for k in self._keys
            ]
        }
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def rotate(self) -> str:
        """Start signing with a fresh key; the previous one verifies until its URLs expire."""
        with self._lock:
            now = self._clock()
            for key in self._keys:
                if key.retired_at is None:
                    key.retired_at = now
            self._keys = [
                k for k in self._keys if k.retired_at is None or now - k.retired_at < self._max_ttl
            ]
            kid = secrets.token_hex(4)
            self._keys.append(_Key(kid, secrets.token_bytes(_KEY_BYTES), now, None))
            self._save()
            return kid

    def rotate_if_older(self, max_age_s: float) -> bool:
        """:meth:`rotate` when the current key is ``max_age_s`` old or older."""
        if self._clock() - self._keys[-1].created_at < max_age_s:
            return False
        self.rotate()
        return True

    @property
    def current_kid(self) -> str:
        return self._keys[-1].kid

    def sign(self, params: SignedParams) -> tuple[str, str]:
        """``(key id, signature)`` of ``params`` under the current key."""
        key = self._keys[-1]
        mac = hmac.new(key.secret, params.message(), hashlib.sha256).digest()
        return key.kid, _b64(mac)

    def verify(self, params: SignedParams, kid: str, signature: str) -> bool:
        """Whether ``signature`` is valid for ``params`` under key ``kid`` (not expiry)."""
        now = self._clock()
        for key in self._keys:
            if key.kid != kid:
                continue
            if key.retired_at is not None and now - key.retired_at >= self._max_ttl:
                return False
            expected = hmac.new(key.secret, params.message(), hashlib.sha256).digest()
            try:
                given = _unb64(signature)
            except ValueError:
                return False
            return hmac.compare_digest(expected, given)
        return False
