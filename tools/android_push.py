"""The push half of ``make android-check``: what cannot be compiled here (no SDK) is at least
checked to be where the build looks for it and to name what the other parts expect.

- the receivers exist in ``android.add_src`` and declare the classes the manifest snippet
  names, extending the documented base classes (FirebaseMessagingService, UnifiedPush's
  MessagingReceiver);
- buildozer.spec declares the service, the sources, the Gradle dependencies, the hook that
  inserts the manifest snippet, and ``POST_NOTIFICATIONS``;
- the Java side starts the service class p4a generates for that spec.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

RECEIVERS = {
    "org.tidings.push.TidingsFcmService": "FirebaseMessagingService",
    "org.tidings.push.TidingsUnifiedPushReceiver": "MessagingReceiver",
}
GRADLE = ("com.google.firebase:firebase-messaging:", "org.unifiedpush.android:connector:")
SERVICE = ("Sync", "tidings/app/android_service.py")


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
    return problems
