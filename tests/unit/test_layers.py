"""The layer rules of docs/architecture.md hold, and `make lint` would catch a broken one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / ".importlinter")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and the contracts, to break on purpose."""
    shutil.copytree(
        ROOT / "src" / "tidings",
        tmp_path / "src" / "tidings",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("server/leak.py", "import tidings.crypto\n", "the server never imports crypto"),
        ("protocol/leak.py", "import tidings.server\n", "protocol imports nothing"),
        ("crypto/leak.py", "from tidings.protocol import frames\n", "crypto imports nothing"),
        ("client/leak.py", "import tidings.app\n", "the client core never imports"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(
    tree: Path, module: str, line: str, contract: str
) -> None:
    (tree / "src" / "tidings" / module).write_text(line, encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout
