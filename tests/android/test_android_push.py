"""The push receivers and the build hook, checked without an SDK: tools/android_push.py on the
repository (and on broken copies), and android/p4a_hook.py on a made-up dist directory."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import android_push  # noqa: E402


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("p4a_hook", ROOT / "android" / "p4a_hook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "android", root / "android", ignore=shutil.ignore_patterns("recipes"))
    (root / "src/tidings/app").mkdir(parents=True)
    shutil.copy(ROOT / "src/tidings/app/android_service.py", root / "src/tidings/app")
    shutil.copy(ROOT / "buildozer.spec", root)
    return root


def test_the_repository_passes() -> None:
    assert android_push.check(ROOT) == []


def test_broken_copies_fail(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    java = root / "android/src/org/tidings/push/TidingsFcmService.java"
    java.write_text(java.read_text().replace("extends FirebaseMessagingService", "extends Object"))
    spec = root / "buildozer.spec"
    spec.write_text(spec.read_text().replace(", POST_NOTIFICATIONS", ""))
    (root / "android/src/org/tidings/push/TidingsUnifiedPushReceiver.java").unlink()
    problems = android_push.check(root)
    assert any("extends FirebaseMessagingService" in p for p in problems)
    assert any("POST_NOTIFICATIONS" in p for p in problems)
    assert any("TidingsUnifiedPushReceiver.java" in p for p in problems)


def test_the_apps_java_calls_are_checked(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    shutil.copy(ROOT / "src/tidings/app/android_push.py", root / "src/tidings/app")
    assert android_push.check(root) == []
    helper = root / "android/src/org/tidings/push/PushRegistration.java"
    text = helper.read_text()
    helper.write_text(
        text.replace("String fcmToken()", "String currentFcmToken()").replace(
            "boolean fcmAvailable(Context context)", "boolean fcmAvailable()"
        )
    )
    problems = android_push.check(root)
    assert any("declares no public static fcmToken()" in p for p in problems), problems
    assert any("fcmAvailable takes no 1 argument(s)" in p for p in problems), problems
    helper.unlink()
    assert any("has no Java source" in p for p in android_push.check(root))


def test_the_hook_declares_the_receivers_and_firebase(tmp_path: Path) -> None:
    hook = _hook()
    main = tmp_path / "src/main"
    main.mkdir(parents=True)
    manifest = main / "AndroidManifest.xml"
    manifest.write_text(
        '<manifest>\n  <application android:label="x">\n  </application>\n</manifest>\n'
    )
    assert hook.patch_manifest(tmp_path)
    assert not hook.patch_manifest(tmp_path)  # once
    text = manifest.read_text()
    assert text.count("org.tidings.push.TidingsFcmService") == 1
    assert text.index("TidingsUnifiedPushReceiver") < text.index("</application>")
    google = {
        "project_info": {"project_number": "1234", "project_id": "tidings-x"},
        "client": [
            {
                "client_info": {
                    "mobilesdk_app_id": "1:1234:android:abcd",
                    "android_client_info": {"package_name": "org.tidings.tidings"},
                },
                "api_key": [{"current_key": "AIza-key"}],
            }
        ],
    }
    source = tmp_path / "google-services.json"
    assert not hook.write_firebase(tmp_path, source, "org.tidings.tidings")  # no file, no FCM
    source.write_text(json.dumps(google))
    assert hook.write_firebase(tmp_path, source, "org.tidings.tidings")
    values = (main / "res/values/tidings_firebase.xml").read_text()
    assert (
        '<string name="google_app_id" translatable="false">1:1234:android:abcd</string>' in values
    )
    assert '"gcm_defaultSenderId" translatable="false">1234<' in values
