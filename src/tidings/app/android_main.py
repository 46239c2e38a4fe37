"""The Android entry point: the build copies this file to `main.py` (see docs/android.md).

python-for-android starts `main.py`; the profile lives in the app's private storage, whose path
p4a exports as ANDROID_PRIVATE.
"""

from __future__ import annotations

import os
from pathlib import Path

from tidings.app.main import run

if __name__ == "__main__":
    run(None, Path(os.environ.get("ANDROID_PRIVATE", ".")) / "profile")
