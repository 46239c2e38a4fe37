"""Resolve buildozer.spec's requirements against python-for-android's recipes, offline.

Runs inside the venv where ``tools/android_check.py`` installed python-for-android; reads a JSON
request on stdin (``requirements``, ``local_recipes``, ``floors``, ``features``) and prints one
JSON report: for every requirement and every recipe dependency, whether a recipe provides it
(ours or p4a's), its version, and the problems found. Recipes are loaded with p4a's own
``Recipe.get_recipe`` and a minimal context (no SDK, NDK or network), which is all the
lookup, the version and the dependency list need.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import pythonforandroid
from packaging.version import InvalidVersion, Version
from pythonforandroid.recipe import PythonRecipe, Recipe

# Bootstrap-provided names that p4a resolves without a recipe of that name.
_BUILTIN = {"python3", "hostpython3", "android", "pyjnius", "genericndkbuild"}


@dataclass
class _Context:
    """The three attributes ``Recipe.get_recipe`` reads."""

    local_recipes: str | None
    storage_dir: str | None = None
    root_dir: str = os.path.dirname(pythonforandroid.__file__)


def _split(requirement: str) -> tuple[str, str | None]:
    name, _, pin = requirement.partition("==")
    return name.strip().lower(), (pin.strip() or None)


def _version(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text.lstrip("v"))
    except InvalidVersion:
        return None


def _load(name: str, ctx: _Context) -> Any | None:
    try:
        return Recipe.get_recipe(name, ctx)
    except ValueError:  # "Recipe does not exist"
        return None


def _origin(recipe: Any, ctx: _Context) -> str:
    path = os.path.realpath(recipe.get_recipe_dir())
    local = ctx.local_recipes and os.path.realpath(ctx.local_recipes)
    return "local" if local and path.startswith(local + os.sep) else "p4a"


def _depends(recipe: Any) -> list[str | list[str]]:
    out: list[str | list[str]] = []
    for dep in getattr(recipe, "depends", []):
        out.append([d.lower() for d in dep] if isinstance(dep, tuple | list) else dep.lower())
    return out


def resolve(request: dict[str, Any]) -> dict[str, Any]:
    """The report for one request (see the module docstring)."""
    ctx = _Context(local_recipes=request["local_recipes"])
    floors: dict[str, str] = request["floors"]
    features: dict[str, list[str]] = request["features"]
    wanted = [_split(r) for r in request["requirements"]]
    names = {name for name, _ in wanted} | {request.get("bootstrap", "sdl2")}
    pins = dict(wanted)
    entries: dict[str, dict[str, Any]] = {}
    problems: list[str] = []

    queue = [name for name, _ in wanted]
    while queue:
        name = queue.pop(0)
        if name in entries:
            continue
        recipe = _load(name, ctx)
        entry: dict[str, Any] = {"requested": name in names, "pin": pins.get(name)}
        entries[name] = entry
        if recipe is None:
            entry["recipe"] = None
            continue
        entry["recipe"] = _origin(recipe, ctx)
        entry["recipe_version"] = recipe.version
        entry["version"] = pins.get(name) or recipe.version
        entry["class"] = type(recipe).__name__
        entry["python_package"] = isinstance(recipe, PythonRecipe)
        entry["depends"] = _depends(recipe)
        entry["url"] = recipe.versioned_url if recipe.url else None
        for flag in features.get(name, []):
            if flag not in getattr(recipe, "extra_cflags", ()):
                problems.append(f"{name}: the recipe does not build with {flag}")
        for dep in entry["depends"]:
            if isinstance(dep, list):  # alternatives: the bootstrap or a requirement picks one
                queue.extend(d for d in dep if d in names)
            else:
                queue.append(dep)

    for name, entry in entries.items():
        floor = floors.get(name)
        if floor is None or "version" not in entry:
            continue
        have = _version(entry["version"])
        if have is None or have < Version(floor):
            problems.append(f"{name}: recipe version {entry['version']} is below the floor {floor}")
    for name, floor in floors.items():
        if name in names and entries[name]["recipe"] is None:
            have = _version(entries[name]["pin"])
            if have is None or have < Version(floor):
                problems.append(f"{name}: pin {entries[name]['pin']} is below the floor {floor}")
    # Dependencies without a recipe are installed by pip, like requirements without one.
    pip = sorted(n for n, e in entries.items() if e["recipe"] is None and n not in _BUILTIN)
    return {
        "p4a_version": pythonforandroid.__version__,
        "python": entries["python3"].get("version") if "python3" in entries else None,
        "entries": entries,
        "pip": pip,
        "problems": problems,
    }


def main() -> int:
    """Read the request on stdin, print the report on stdout."""
    report = resolve(json.load(sys.stdin))
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
