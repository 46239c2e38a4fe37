"""Hard requirement: the engine's own unit tests cover every branch of client/core/engine.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_engine_unit_tests_cover_every_branch(tmp_path: Path) -> None:
    data = tmp_path / ".coverage"
    run = [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}"]
    tests = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/client/test_engine.py"]
    subprocess.run([*run, *tests], cwd=ROOT, check=True, capture_output=True)
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "report",
            f"--data-file={data}",
            "--include=*/client/core/engine.py",
            "--show-missing",
            "--fail-under=100",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stdout + report.stderr
