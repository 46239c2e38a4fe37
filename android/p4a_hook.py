"""python-for-android build hook (``p4a.hook`` in buildozer.spec).

p4a's manifest template has no place for services and receivers of our own, so after p4a has
written the project (``after_apk_build``: in the dist directory, before Gradle runs) this:

* inserts ``android/manifest_application.xml`` (the FCM service and the UnifiedPush receiver)
  before ``</application>`` of ``src/main/AndroidManifest.xml``, once;
* turns the operator's ``google-services.json`` (next to buildozer.spec; Firebase console →
  project settings → Android app ``org.tidings.tidings``) into the string resources the Google
  services Gradle plugin would make (``res/values/tidings_firebase.xml``), which Firebase reads
  at start. Without the file the build has no FCM; UnifiedPush still works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
MARK = "<!-- tidings push -->"


def patch_manifest(dist: Path, snippet: Path = HERE / "manifest_application.xml") -> bool:
    manifest = dist / "src" / "main" / "AndroidManifest.xml"
    text = manifest.read_text()
    if MARK in text:
        return False
    head, tail = text.rsplit("</application>", 1)
    manifest.write_text(f"{head}{MARK}\n{snippet.read_text()}</application>{tail}")
    return True


def firebase_values(google_services: dict[str, Any], package: str) -> dict[str, str]:
    """The resource strings of google-services.json's client for ``package``."""
    project = google_services["project_info"]
    for client in google_services["client"]:
        info = client["client_info"]
        if info["android_client_info"]["package_name"] == package:
            values = {
                "google_app_id": info["mobilesdk_app_id"],
                "gcm_defaultSenderId": project["project_number"],
                "project_id": project["project_id"],
                "google_api_key": client["api_key"][0]["current_key"],
            }
            if project.get("storage_bucket"):
                values["google_storage_bucket"] = project["storage_bucket"]
            return values
    raise ValueError(f"google-services.json has no Android client {package}")


def write_firebase(dist: Path, source: Path, package: str) -> bool:
    if not source.exists():
        return False
    values = firebase_values(json.loads(source.read_text()), package)
    out = dist / "src" / "main" / "res" / "values" / "tidings_firebase.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f'    <string name="{name}" translatable="false">{escape(value)}</string>'
        for name, value in values.items()
    ]
    out.write_text('<?xml version="1.0" encoding="utf-8"?>\n<resources>\n'
                   + "\n".join(lines) + "\n</resources>\n")  # fmt: skip
    return True


def after_apk_build(toolchain: Any) -> None:
    dist = Path.cwd()  # p4a runs the hooks in the dist directory
    patch_manifest(dist)
    package = str(getattr(toolchain.args, "package", "org.tidings.tidings"))
    write_firebase(dist, HERE.parent / "google-services.json", package)
