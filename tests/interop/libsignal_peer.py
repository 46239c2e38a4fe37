"""Client for the Node libsignal peer (peer.mjs): one JSON command per line, one answer per line.

Test-only, like the peer: the libsignal packages are AGPL and never shipped.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VERSIONS = ("0.72.1", "0.90.0")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class PeerError(Exception):
    """The peer answered a command with an error."""

    def __init__(self, cmd: str, error: dict[str, Any]) -> None:
        super().__init__(
            f"{cmd}: {error.get('code_name') or error.get('name')}: {error['message']}"
        )
        self.error = error


_install_lock = threading.Lock()


def ensure_node_modules() -> None:
    """Run ``npm ci`` once if the pinned packages are not installed."""
    with _install_lock:
        if (HERE / "node_modules" / "libsignal-072").is_dir() and (
            HERE / "node_modules" / "libsignal-090"
        ).is_dir():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed for the interop tests")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
        )


class LibsignalPeer:
    """A running ``node peer.mjs <version>``."""

    def __init__(self, version: str) -> None:
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is needed for the interop tests")
        self.version = version
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [node, str(HERE / "peer.mjs"), version],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self._next_id = 0
        got = self.call("version")["version"]
        if got != version:
            raise RuntimeError(f"peer runs libsignal {got}, wanted {version}")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its result; :class:`PeerError` if it failed."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._next_id += 1
        line = json.dumps({"id": self._next_id, "cmd": cmd, **args}) + "\n"
        self._proc.stdin.write(line.encode())
        self._proc.stdin.flush()
        answer_line = self._proc.stdout.readline()
        if not answer_line:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"libsignal peer exited: {tail}")
        answer = json.loads(answer_line)
        if answer["id"] != self._next_id:
            raise RuntimeError("libsignal peer answered out of order")
        if not answer["ok"]:
            raise PeerError(cmd, answer["error"])
        result: dict[str, Any] = answer["result"]
        return result

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> LibsignalPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
