"""tools/android_check.py: the offline resolution of buildozer.spec and the import scan.

The resolver tests need python-for-android in ``build/android-check/p4a``, which ``make
android-check`` (a prerequisite of ``make test``) installs; the fixture installs it when missing.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import android_check  # noqa: E402
import android_imports  # noqa: E402


@pytest.fixture(scope="module")
def p4a() -> Path:
    """python-for-android from PyPI, in the venv `make android-check` keeps (made if missing)."""
    return android_check.ensure_venv(
        android_check.WORK / "p4a",
        [f"python-for-android=={android_check.P4A_VERSION}"],
        "python-for-android",
    )


_APP_EXCLUDED = ["tidings/server/*", "tidings/app/harness.py", "tidings/app/screenshots.py"]


def test_spec_names_the_local_recipes() -> None:
    requirements, local, excluded = android_check.read_spec()
    assert local == str(ROOT / "android" / "recipes")
    assert "tidings/server/*" in excluded
    names = {r.partition("==")[0] for r in requirements}
    assert {"libsodium", "pynacl", "sqlite3", "openssl", "cryptography", "kyber-py"} <= names
    for recipe in ("libsodium", "pynacl", "sqlite3", "openssl", "cryptography"):
        assert (ROOT / "android" / "recipes" / recipe / "__init__.py").is_file()


def test_spec_resolves_with_the_local_recipes(p4a: Path) -> None:
    requirements, local, _ = android_check.read_spec()
    report = android_check.resolve(p4a, requirements, local)
    assert report["problems"] == []
    entries = report["entries"]
    assert entries["libsodium"]["recipe"] == "local"
    assert entries["libsodium"]["version"] == "1.0.20"
    assert entries["pynacl"]["version"] == "1.6.2"
    assert entries["sqlite3"]["recipe"] == "local"
    assert entries["openssl"]["version"].startswith("3.5.")
    assert entries["cryptography"]["version"] == "50.0.2"
    assert entries["msgspec"]["recipe"] == "p4a"
    assert "kyber-py" in report["pip"]


def test_stock_recipes_fail_the_floors(p4a: Path) -> None:
    """What the spec would ship without android/recipes: the problems the brief started from."""
    requirements, _, _ = android_check.read_spec()
    problems = android_check.resolve(p4a, requirements, None)["problems"]
    text = "\n".join(problems)
    assert "libsodium: recipe version 1.0.16 is below the floor 1.0.18" in text
    assert "pynacl: recipe version 1.3.0 is below the floor 1.4" in text
    assert "sqlite3: the recipe does not build with -DSQLITE_ENABLE_FTS5" in text


def test_a_pin_below_its_floor_fails(p4a: Path) -> None:
    report = android_check.resolve(p4a, ["python3", "kyber-py==1.0.0", "libsodium==1.0.17"], None)
    assert "kyber-py: pin 1.0.0 is below the floor 1.2" in report["problems"]
    assert "libsodium: recipe version 1.0.17 is below the floor 1.0.18" in report["problems"]


def test_unknown_or_unpinned_requirements_fail(p4a: Path) -> None:
    requirements = ["python3", "websockets", "no-such-dist-tidings==1.0"]
    report = android_check.resolve(p4a, requirements, None)
    problems = android_check.check_build(report, requirements, p4a)
    assert "websockets: no recipe, so it must be pinned (name==version)" in problems
    assert any(p.startswith("no-such-dist-tidings==1.0: neither a recipe") for p in problems)


def test_app_imports_are_covered_by_the_spec() -> None:
    found = android_imports.scan(ROOT, _APP_EXCLUDED)
    for module in ("kivy", "nacl", "cryptography", "msgspec", "httpx", "websockets", "kyber_py"):
        assert module in found, module
        assert found[module]["optional"] is False
    assert not any(name.startswith("(excluded)") for name in found)
    assert "litestar" not in found  # the server stays off the phone


def _tree(tmp_path: Path, main: str, **modules: str) -> Path:
    app = tmp_path / "src" / "tidings" / "app"
    app.mkdir(parents=True)
    for pkg in (tmp_path / "src" / "tidings", app):
        (pkg / "__init__.py").write_text("")
    (app / "android_main.py").write_text(main)
    for name, text in modules.items():
        (app / f"{name}.py").write_text(text)
    return tmp_path


def test_scan_flags_missing_optional_and_excluded(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        "from . import helper\nimport sqlite3\n",
        helper=(
            "def f():\n    import yaml\n"
            "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n"
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy\n"
            "from tidings.app import harness\nimport imghdr\n"
        ),
        harness="import pytest\n",
    )
    report = {"entries": {"python3": {}}, "pip": []}
    problems = android_imports.uncovered(root, ["tidings/app/harness.py"], report)
    text = "\n".join(problems)
    assert "add pyyaml to requirements" in text
    assert "ujson" not in text and "numpy" not in text and "pytest" not in text
    assert "tidings/app/harness.py is left out of the APK" in text
    assert "import sqlite3" in text and "sqlite3 recipe" in text
    assert "import imghdr" in text


def test_wheel_requirements_follow_markers(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(
            "demo-1.0.dist-info/METADATA",
            "Name: demo\n"
            "Requires-Dist: idna>=2.8\n"
            'Requires-Dist: exceptiongroup>=1; python_version < "3.11"\n'
            'Requires-Dist: typing_extensions>=4; python_version < "3.15"\n'
            'Requires-Dist: trio; extra == "trio"\n',
        )
    assert android_imports.wheel_requirements(wheel, "3.14") == ["idna", "typing_extensions"]
    assert android_imports.wheel_requirements(wheel, "3.15") == ["idna"]


def test_check_passes_without_tests(p4a: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "android_check.py"), "--no-tests"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
