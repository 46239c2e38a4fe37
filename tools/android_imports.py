"""What the APK's code imports, statically, compared with what buildozer.spec ships.

Starts at ``src/tidings/app/android_main.py`` (p4a's ``main.py``), follows every ``tidings``
import (module level or inside functions; not ``if TYPE_CHECKING:`` blocks) through the files
the spec packages, and collects the other top-level modules. Imports inside a ``try`` that
catches ``ImportError`` are optional and reported as such, not required.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

# Import name -> PyPI distribution (= p4a requirement) where the two differ.
MODULE_TO_DIST = {
    "nacl": "pynacl",
    "PIL": "pillow",
    "kyber_py": "kyber-py",
    "argon2": "argon2-cffi",
    "_argon2_cffi_bindings": "argon2-cffi",
    "blurhash": "blurhash-python",
    "pillow_heif": "pillow-heif",
    "jnius": "pyjnius",
    "yaml": "pyyaml",
}
# Standard-library modules that need a recipe on Android.
STDLIB_RECIPES = {"sqlite3": "sqlite3", "ssl": "openssl", "ctypes": "libffi", "lzma": "liblzma"}
# Gone from p4a's Python 3.14 (removed in 3.12/3.13) or never built for Android.
NOT_ON_ANDROID = {
    *("aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib"),
    *("nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu"),
    *("xdrlib", "lib2to3", "distutils", "asynchat", "asyncore", "imp", "smtpd"),
    *("tkinter", "turtle", "curses", "readline", "idlelib"),
}
# Recipes that are not Python distributions one could pip-install into a desktop venv.
NATIVE_ONLY = {"kivy", "pyjnius", "android", "genericndkbuild", "setuptools"}
_ENTRY = "tidings/app/android_main.py"
#: the push service, p4a's other entry point (buildozer.spec ``services``)
_SERVICE_ENTRY = "tidings/app/android_service.py"


def _module_file(src: Path, dotted: str) -> Path | None:
    base = src.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(src: Path, path: Path) -> list[str]:
    # a/b/c.py and a/b/__init__.py both resolve relative imports against the package a.b
    return list(path.relative_to(src).with_suffix("").parts)[:-1]


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            caught = ast.unparse(ast.Tuple([h.type for h in parent.handlers if h.type], ast.Load()))
            if re.search(r"\b(ImportError|ModuleNotFoundError|Exception)\b", caught):
                return True
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        node = parent
    return False


def _imports(src: Path, path: Path) -> Iterable[tuple[str, bool]]:
    """``(absolute module name, optional)`` for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = _package_of(src, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, _optional(node, parents)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            optional = _optional(node, parents)
            yield base, optional
            for alias in node.names:  # ``from pkg import submodule``
                yield f"{base}.{alias.name}", optional


def scan(root: Path, excluded: list[str]) -> dict[str, dict[str, object]]:
    """``{top-level module: {"optional": bool, "files": [...]}}`` for non-Tidings imports."""
    src = root / "src"
    found: dict[str, dict[str, object]] = {}
    seen: set[Path] = set()
    queue = [src / _ENTRY] + [p for p in [src / _SERVICE_ENTRY] if p.exists()]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        rel = str(path.relative_to(src))
        for name, optional in _imports(src, path):
            top = name.split(".")[0]
            if top == "tidings":
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # the packages' __init__ run too
                    target = _module_file(src, ".".join(parts[:i]))
                    if target is None:
                        continue
                    trel = str(target.relative_to(src))
                    if any(fnmatch.fnmatch(trel, pat) for pat in excluded):
                        if not optional:
                            found.setdefault(f"(excluded) {trel}", {"optional": False})
                            found[f"(excluded) {trel}"].setdefault("files", []).append(rel)  # type: ignore[attr-defined]
                        continue
                    queue.append(target)
                continue
            if top == "__future__" or not top:
                continue
            entry = found.setdefault(top, {"optional": True, "files": []})
            entry["optional"] = bool(entry["optional"]) and optional
            entry["files"].append(rel)  # type: ignore[attr-defined]
    return found


def _dist(module: str) -> str:
    return re.sub(r"[-_.]+", "-", MODULE_TO_DIST.get(module, module)).lower()


def uncovered(root: Path, excluded: list[str], report: dict[str, object]) -> list[str]:
    """Problems: required imports that neither the stdlib, a recipe nor a requirement provides."""
    entries: dict[str, dict[str, object]] = report["entries"]  # type: ignore[assignment]
    provided = {re.sub(r"[-_.]+", "-", name).lower() for name in entries}
    problems: list[str] = []
    for module, info in sorted(scan(root, excluded).items()):
        where = ", ".join(sorted(set(info["files"])))  # type: ignore[call-overload]
        if module.startswith("(excluded)"):
            problems.append(f"{module[11:]} is left out of the APK but imported by {where}")
            continue
        if info["optional"]:
            continue
        if module in NOT_ON_ANDROID:
            problems.append(f"import {module} ({where}): not in p4a's Python 3.14 on Android")
        elif module in sys.stdlib_module_names:
            recipe = STDLIB_RECIPES.get(module)
            if recipe and recipe not in provided:
                problems.append(f"import {module} ({where}) needs the {recipe} recipe")
        elif _dist(module) not in provided:
            problems.append(f"import {module} ({where}): add {_dist(module)} to requirements")
    return problems


# Environment markers' values on p4a's Python 3.14 (``sys.platform`` is "android" from 3.13).
_ANDROID_MARKERS = {
    "sys_platform": {"android"},
    "platform_system": {"Android"},
    "os_name": {"posix"},
}
_PLATFORM_MARKER = r'\b(sys_platform|platform_system|os_name)\s*(==|!=)\s*["\']([^"\']*)["\']'


def wheel_requirements(wheel: Path, python_version: str) -> list[str]:
    """Distributions a pure wheel needs at run time on ``python_version`` (no extras)."""
    target = tuple(int(p) for p in python_version.split("."))
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    needed = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        spec, _, marker = line[len("Requires-Dist:") :].partition(";")
        if "extra" in marker:
            continue
        keep = True
        for op, version in re.findall(r'python_version\s*([<>=!]=?)\s*"([\d.]+)"', marker):
            want = tuple(int(p) for p in version.split("."))
            keep &= {"<": target < want, "<=": target <= want, ">": target > want}.get(
                op, {">=": target >= want, "==": target == want, "!=": target != want}.get(op, True)
            )
        for key, op, value in re.findall(_PLATFORM_MARKER, marker):
            keep &= (value in _ANDROID_MARKERS[key]) == (op == "==")
        if keep and " or " not in marker:
            needed.append(re.split(r"[\[<>=!~( ]", spec.strip(), maxsplit=1)[0])
    return needed


def files_importing(root: Path, paths: list[str], module: str) -> list[str]:
    """Test files under ``paths`` that import ``module`` (left out where it cannot install)."""
    pattern = re.compile(rf"^\s*(import|from)\s+{re.escape(module)}\b", re.MULTILINE)
    hits = []
    for base in paths:
        for path in sorted((root / base).rglob("*.py")):
            if pattern.search(path.read_text()):
                hits.append(str(path.relative_to(root)))
    return hits
