"""The vault's server secrets and what is derived from them: verifiers and fake params.

``<data>/vault.key`` holds 64 random bytes, made on first use with mode 0600: the first 32 are
the pepper of the verifiers, the last 32 the secret of the fake salts. Losing the file makes
every stored verifier useless (each user then needs a device of the account to re-enrol);
it is not in the database, so a copy of the database alone cannot test guesses against the
verifiers (it still can against the wrapped keys, at one Argon2id per guess).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

KEY_FILE = "vault.key"
#: the client's current defaults (tidings.crypto.vault): Argon2id m = 64 MiB, t = 3, p = 1
FAKE_M_COST_KIB = 64 * 1024
FAKE_T_COST = 3
FAKE_PARALLELISM = 1
_PARAMS = struct.Struct(">BIIB16s")


@dataclass(frozen=True, slots=True)
class VaultKeys:
    pepper: bytes = field(repr=False)
    fake_secret: bytes = field(repr=False)

    @classmethod
    def load(cls, data_dir: Path) -> VaultKeys:
        """Read ``vault.key`` in ``data_dir``, making it (0600) if it does not exist."""
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = data_dir / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(secrets.token_bytes(64))
                file.flush()
                os.fsync(file.fileno())
        data = path.read_bytes()
        if len(data) != 64:
            raise ValueError(f"{path} is damaged (expected 64 bytes)")
        os.chmod(path, 0o600)
        return cls(data[:32], data[32:])

    def verifier(self, credential: bytes) -> bytes:
        """``HMAC-SHA256(pepper, b"tidings vault verifier v1" || credential)``."""
        return hmac.new(
            self.pepper, b"tidings vault verifier v1" + credential, hashlib.sha256
        ).digest()

    def fake_params(self, username: str) -> bytes:
        """Params for a username without a vault: deterministic, the same shape as real ones."""
        salt = hmac.new(
            self.fake_secret, b"tidings vault fake salt v1" + username.encode(), hashlib.sha256
        ).digest()[:16]
        return _PARAMS.pack(1, FAKE_M_COST_KIB, FAKE_T_COST, FAKE_PARALLELISM, salt)
