"""``make android-check``: what can be verified about the Android build without an Android SDK.

1. Installs python-for-android (pinned) into ``build/android-check/p4a`` (cached) and resolves
   every entry of ``buildozer.spec``'s ``requirements``, and every recipe dependency, against
   p4a's recipes and ours (``p4a.local_recipes``) offline, with ``tools/android_resolve.py``.
2. Fails on a requirement with neither a recipe nor a pure-Python wheel for p4a's Python (one
   ``pip download`` per pin, cached in ``build/android-check/wheels``), on an unpinned
   pip-installed requirement, on a version below the floor the code needs (:data:`FLOORS`),
   on a missing build flag (:data:`FEATURES`), and on a third-party import reachable from the
   app's entry point that no requirement provides (:mod:`android_imports`).
3. Runs the client-core and crypto tests in ``build/android-check/apk-venv``, pinned to the
   versions the APK contains (:func:`apk_pins`): cryptography 46.0.3, python-for-android's stock
   recipe, so that ML-KEM runs on the pure-Python fallback for real.

Exit status 0 when everything holds. ``--no-tests`` stops after step 2.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import android_imports  # a sibling module, found through the line above
import android_push  # a sibling module, found through the line above

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "android-check"
P4A_VERSION = "2026.5.9"
SPEC = ROOT / "buildozer.spec"

FLOORS = {
    "libsodium": "1.0.18",  # crypto_core_ed25519_*, crypto_scalarmult_ed25519_base_noclamp
    "pynacl": "1.4",  # binds them (and PyNaCl 1.6 for p4a's Python 3.14)
    "sqlite3": "3.24",  # UPSERT in the client store
    "msgspec": "0.19",
    "httpx": "0.27",
    "websockets": "14",
    "kivy": "2.3.1",
    "kyber-py": "1.2",  # ML-KEM per FIPS 203 final, key_derive from a 64-byte seed
    "av": "14.1",  # VideoFrame.rotation: portrait videos' thumbnails upright (media.video)
    "numpy": "1.26",  # the voice waveform's peaks (media.voice); pyproject's floor
    "qrcode": "7.4",  # the link code (app.qr); pyproject's floor
}
FEATURES = {"sqlite3": ["-DSQLITE_ENABLE_FTS5"]}  # the client store's search index

# The APK's cryptography for the test venv: p4a's stock recipe, without ML-KEM. The local
# cryptography 50.0.2 recipe (ML-KEM through OpenSSL) is the desktop's version, tested by
# `make test`; this venv proves the app also works where that recipe cannot be built.
APK_TEST_CRYPTOGRAPHY = "46.0.3"
TEST_TOOLS = [
    *("pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3", "hypothesis>=6.100"),
    "coverage[toml]>=7.5",
]
TEST_PATHS = ["tests/unit/crypto", "tests/unit/client", "tests/unit/e2ee"]
# Server-side packages the client tests' in-process server needs, and the command line's
# platformdirs (its default profile; the app does not import it): not in the APK.
HOST_ONLY = {"litestar", "uvicorn", "hypercorn", "platformdirs"}


def log(message: str) -> None:
    """One line of progress on stderr."""
    print(f"android-check: {message}", file=sys.stderr, flush=True)


def read_spec(path: Path = SPEC) -> tuple[list[str], str | None, list[str]]:
    """``(requirements, local recipes dir, excluded source patterns)`` from buildozer.spec."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(path)
    app = parser["app"]
    requirements = [r.strip() for r in app.get("requirements", "").split(",") if r.strip()]
    local = app.get("p4a.local_recipes")
    excluded = [p.strip() for p in app.get("source.exclude_patterns", "").split(",") if p.strip()]
    excluded += [d.strip() + "/*" for d in app.get("source.exclude_dirs", "").split(",") if d]
    return requirements, (str((ROOT / local).resolve()) if local else None), excluded


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    # Commands are built here from fixed arguments and the spec's pins, never from a shell.
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]  # noqa: S603


def ensure_venv(path: Path, packages: list[str], label: str) -> Path:
    """A venv at ``path`` with exactly ``packages`` installed; rebuilt only when they change."""
    python = path / "bin" / "python"
    stamp = path / ".tidings-stamp"
    key = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == key:
        return python
    log(f"installing {label} into {path.relative_to(ROOT)} (cached after this run)")
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(path)])
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages])
    stamp.write_text(key)
    return python


def resolve(p4a_python: Path, requirements: list[str], local: str | None) -> dict[str, object]:
    """Run tools/android_resolve.py inside the p4a venv."""
    request = {
        "requirements": requirements,
        "local_recipes": local,
        "floors": FLOORS,
        "features": FEATURES,
        "bootstrap": "sdl2",
    }
    out = _run(
        [str(p4a_python), str(ROOT / "tools" / "android_resolve.py")],
        input=json.dumps(request),
        cwd=ROOT,
    )
    report: dict[str, object] = json.loads(out.stdout)
    return report


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pure_wheel(p4a_python: Path, name: str, pin: str, python_version: str) -> str | None:
    """The py3-none-any wheel p4a's pip would install for ``name==pin``, or None."""
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    prefix = f"{_normalize(name)}-{pin}-"
    cached = [w for w in os.listdir(wheels) if w.lower().startswith(prefix)]
    if not cached:
        cmd = [str(p4a_python), "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-deps", "--only-binary=:all:", "--platform", "any"]
        cmd += ["--python-version", python_version, "--implementation", "cp", "--abi", "none"]
        cmd += ["-d", str(wheels), f"{name}=={pin}"]
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:  # noqa: S603
            return None
        cached = [w for w in os.listdir(wheels) if w.lower().startswith(prefix)]
    return next((w for w in cached if w.endswith("-none-any.whl")), None)


def check_build(report: dict[str, object], requirements: list[str], p4a_python: Path) -> list[str]:
    """Problems with recipes, pins and wheels; the resolver's own problems included."""
    problems = list(report["problems"])  # type: ignore[call-overload]
    entries: dict[str, dict[str, object]] = report["entries"]  # type: ignore[assignment]
    pins = {_normalize(n): p for n, _, p in (r.partition("==") for r in requirements)}
    python_version = ".".join(str(report["python"]).split(".")[:2])
    for name in report["pip"]:  # type: ignore[attr-defined]
        if not entries[name]["requested"]:
            problems.append(f"{name}: needed by a recipe but not in requirements (pin it there)")
            continue
        pin = pins.get(_normalize(name))
        if not pin:
            problems.append(f"{name}: no recipe, so it must be pinned (name==version)")
            continue
        wheel = pure_wheel(p4a_python, name, pin, python_version)
        if wheel is None:
            problems.append(f"{name}=={pin}: neither a recipe nor a pure-Python wheel on PyPI")
            continue
        entries[name]["wheel"] = wheel
        for dep in android_imports.wheel_requirements(WORK / "wheels" / wheel, python_version):
            if _normalize(dep) not in {_normalize(n) for n in entries}:
                problems.append(f"{name}=={pin} needs {dep}, which is not in requirements")
    return problems


def apk_pins(report: dict[str, object]) -> dict[str, str]:
    """``{distribution: version}`` of the Python packages the APK ships, as PyPI names."""
    entries: dict[str, dict[str, object]] = report["entries"]  # type: ignore[assignment]
    pins: dict[str, str] = {}
    for name, entry in entries.items():
        version = entry.get("version") or entry.get("pin")
        python_package = entry["recipe"] is None or entry.get("python_package")
        if not version or not python_package or name in android_imports.NATIVE_ONLY:
            continue
        pins[name] = str(version).lstrip("v")
    pins["cryptography"] = APK_TEST_CRYPTOGRAPHY
    return pins


def test_venv_packages(pins: dict[str, str]) -> list[str]:
    """The APK pins, plus pyproject's other dependencies the tests' server needs, plus pytest."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = []
    extras = project.get("optional-dependencies", {})
    for spec in [*project["dependencies"], *extras.get("server", []), *extras.get("client", [])]:
        name = re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]
        if _normalize(name) in {_normalize(h) for h in HOST_ONLY}:
            extra.append(spec)
    wanted = {name: version for name, version in pins.items() if name != "kivy"}
    return sorted(f"{n}=={v}" for n, v in wanted.items()) + extra + TEST_TOOLS


def run_tests(python: Path) -> int:
    """The client-core and crypto subset, in the pinned venv; pytest's exit status."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    probe = "from tidings.crypto.capabilities import report; print(report())"
    versions = _run([str(python), "-c", probe], env=env, cwd=ROOT).stdout.strip()
    log(f"APK venv: {versions}")
    ignore = [f"--ignore={p}" for p in android_imports.files_importing(ROOT, TEST_PATHS, "kivy")]
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_PATHS, *ignore]
    return subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    """Run the checks; 0 when the Android build's requirements and the tests hold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true", help="stop before the test run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    requirements, local, excluded = read_spec()
    p4a = ensure_venv(WORK / "p4a", [f"python-for-android=={P4A_VERSION}"], "python-for-android")
    report = resolve(p4a, requirements, local)
    problems = check_build(report, requirements, p4a)
    problems += android_imports.uncovered(ROOT, excluded, report)
    problems += android_push.check(ROOT)
    entries: dict[str, dict[str, object]] = report["entries"]  # type: ignore[assignment]
    for name in sorted(e.partition("==")[0].lower() for e in requirements):
        entry = entries[name]
        how = f"{entry['recipe']} recipe" if entry["recipe"] else f"wheel {entry.get('wheel')}"
        log(f"  {name} {entry.get('version') or entry.get('pin') or ''}: {how}")
    if problems:
        for problem in problems:
            log(f"FAIL {problem}")
        return 1
    log(f"requirements resolve (p4a {report['p4a_version']}, Python {report['python']})")
    if args.no_tests:
        return 0
    pins = apk_pins(report)
    apk = ensure_venv(WORK / "apk-venv", test_venv_packages(pins), "the APK's package versions")
    status = run_tests(apk)
    log(f"done in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
