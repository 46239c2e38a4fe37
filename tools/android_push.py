"""The push half of ``make android-check``: what cannot be compiled here (no SDK) is at least
checked to be where the build looks for it and to name what the other parts expect.

- the receivers exist in ``android.add_src`` and declare the classes the manifest snippet
  names, extending the documented base classes (FirebaseMessagingService, UnifiedPush's
  MessagingReceiver);
- buildozer.spec declares the service, the sources, the Gradle dependencies, the hook that
  inserts the manifest snippet, and ``POST_NOTIFICATIONS``;
- the Java side starts the service class p4a generates for that spec;
- every method the app calls through pyjnius on a class of ours (``autoclass("org.tidings...")``
  in ``src/tidings/app``) is declared ``public static`` in that class's Java source, with as
  many parameters as the call passes (:func:`java_calls`).
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

RECEIVERS = {
    "org.tidings.push.TidingsFcmService": "FirebaseMessagingService",
    "org.tidings.push.TidingsUnifiedPushReceiver": "MessagingReceiver",
}
GRADLE = ("com.google.firebase:firebase-messaging:", "org.unifiedpush.android:connector:")
SERVICE = ("Sync", "tidings/app/android_service.py")


def _autoclass_targets(tree: ast.Module) -> dict[str, str]:
    """``{expression holding the class: Java class name}`` for autoclass("org.tidings...")."""
    constants = {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Call):
            continue
        call = node.value
        if ast.unparse(call.func) != "autoclass" or len(call.args) != 1:
            continue
        arg = call.args[0]
        name = arg.value if isinstance(arg, ast.Constant) else constants.get(ast.unparse(arg))
        if isinstance(name, str) and name.startswith("org.tidings."):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                found[ast.unparse(target)] = name
    return found


def java_calls(root: Path) -> list[str]:
    """Problems with the app's pyjnius calls into our Java classes ([] when all exist)."""
    problems = []
    sources = [root / "android" / "src"]
    for path in sorted((root / "src" / "tidings" / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        targets = _autoclass_targets(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            java_class = targets.get(ast.unparse(node.func.value))
            if java_class is None:
                continue
            method, arity = node.func.attr, len(node.args)
            where = f"{path.relative_to(root)}:{node.lineno}"
            files = [s / (java_class.replace(".", "/") + ".java") for s in sources]
            text = next((f.read_text() for f in files if f.is_file()), None)
            if text is None:
                problems.append(f"{where} calls {java_class}, which has no Java source")
                continue
            declared = re.findall(
                rf"public\s+static\s+[\w<>\[\], ]+?\s+{method}\s*\(([^)]*)\)", text
            )
            if not declared:
                problems.append(f"{where}: {java_class} declares no public static {method}()")
            elif all(len([p for p in d.split(",") if p.strip()]) != arity for d in declared):
                problems.append(f"{where}: {java_class}.{method} takes no {arity} argument(s)")
    return problems


def check(root: Path) -> list[str]:
    """Problems found, as sentences ([] when all holds)."""
    spec = configparser.ConfigParser(interpolation=None, strict=False)
    spec.read(root / "buildozer.spec")
    app = spec["app"]
    problems: list[str] = []
    services = [s.strip() for s in app.get("services", "").split(",") if s.strip()]
    if f"{SERVICE[0]}:{SERVICE[1]}" not in services:
        problems.append(f"buildozer.spec: services lacks {SERVICE[0]}:{SERVICE[1]}")
    if not (root / "src" / SERVICE[1]).is_file():
        problems.append(f"the service entry point src/{SERVICE[1]} is missing")
    permissions = [p.strip() for p in app.get("android.permissions", "").split(",")]
    if "POST_NOTIFICATIONS" not in permissions:
        problems.append("buildozer.spec: android.permissions lacks POST_NOTIFICATIONS")
    gradle = app.get("android.gradle_dependencies", "")
    problems += [f"buildozer.spec: no Gradle dependency {g}…" for g in GRADLE if g not in gradle]
    hook = app.get("p4a.hook", "")
    if not hook or not (root / hook).is_file():
        problems.append("buildozer.spec: p4a.hook does not name android/p4a_hook.py")
    sources = [root / s.strip() for s in app.get("android.add_src", "").split(",") if s.strip()]
    snippet = root / "android" / "manifest_application.xml"
    manifest = snippet.read_text() if snippet.is_file() else ""
    for name, base in RECEIVERS.items():
        package, _, cls = name.rpartition(".")
        files = [s / package.replace(".", "/") / f"{cls}.java" for s in sources]
        found = [f for f in files if f.is_file()]
        if not found:
            problems.append(f"no {cls}.java in android.add_src ({', '.join(map(str, files))})")
            continue
        text = found[0].read_text()
        if f"package {package};" not in text:
            problems.append(f"{cls}.java is not in package {package}")
        if not re.search(rf"public\s+class\s+{cls}\s+extends\s+{base}\b", text):
            problems.append(f"{cls}.java does not declare public class {cls} extends {base}")
        if f'android:name="{name}"' not in manifest:
            problems.append(f"android/manifest_application.xml does not declare {name}")
    service_class = f"{app.get('package.domain')}.{app.get('package.name')}.Service{SERVICE[0]}"
    wake = [s / "org/tidings/push/Wake.java" for s in sources]
    if not any(w.is_file() and f'"{service_class}"' in w.read_text() for w in wake):
        problems.append(f"Wake.java does not start p4a's service class {service_class}")
    return problems + java_calls(root)
