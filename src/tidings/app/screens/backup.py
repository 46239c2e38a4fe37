"""Settings → Backup: turn the encrypted history backup on with a passphrase (a strength meter
driven by the client's estimate), see its status, change the passphrase, export and import.

Every decision is the client's (:meth:`Client.enable_backup` refuses a weak passphrase too);
the screen only checks what it can say sooner: the two fields match, the estimate is
acceptable. Enrolment derives the keys (Argon2id, about a second) and the first upload may take
a while: the progress line says which step runs.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, StringProperty

from tidings.app.screens.backup_files import choose_file
from tidings.app.screens.base import AppScreen
from tidings.client.backup.service import BackupStatus
from tidings.client.backup.strength import estimate_passphrase
from tidings.client.errors import ClientError

#: what a score means, for the meter's caption
SCORE_WORDS = ("Very weak", "Weak", "Fair", "Good", "Strong")


def size_text(count: int | None) -> str:
    if count is None:
        return "unknown"
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} bytes"


def when_text(ms: int | None) -> str:
    if ms is None:
        return "not in this session"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def describe(status: BackupStatus) -> tuple[str, str]:
    """(headline, details) of a status, for the screen and the settings row."""
    if not status.enabled:
        return "Off", "Your history is only on your devices."
    pages = "unknown" if status.pages is None else str(status.pages)
    noun = "page" if status.pages == 1 else "pages"
    details = (
        f"Last upload: {when_text(status.last_upload)}\n"
        f"{pages} {noun}, {size_text(status.bytes)} in the vault; "
        f"{status.pending} waiting to upload"
    )
    return "On", details


class BackupScreen(AppScreen):
    enabled = BooleanProperty(False)
    status_title = StringProperty("")
    status_text = StringProperty("")
    #: the strength estimate of the new passphrase: 0..4, -1 while empty
    score = NumericProperty(-1)
    feedback = StringProperty("")
    error = StringProperty("")
    progress = StringProperty("")
    busy = BooleanProperty(False)

    # ------------------------------------------------------------------ status

    def on_shown(self) -> None:
        self.error = ""
        self.progress = ""
        self.refresh()

    def refresh(self) -> None:
        self.tidings.tasks.spawn(self.client.backup_status(), on_done=self._show_status)

    def _show_status(self, status: BackupStatus) -> None:
        self.enabled = status.enabled
        self.status_title, self.status_text = describe(status)

    # ------------------------------------------------------------------ enabling

    def _user_inputs(self) -> list[str]:
        account = self.client.account
        return [account.username, urllib.parse.urlsplit(account.server_url).hostname or ""]

    def on_passphrase(self, text: str) -> None:
        """The new passphrase changed: update the meter and its advice."""
        if not text:
            self.score, self.feedback = -1, ""
            return
        strength = estimate_passphrase(text, self._user_inputs())
        self.score = strength.score
        advice = [strength.warning, *strength.suggestions]
        verdict = SCORE_WORDS[strength.score]
        if strength.acceptable:
            self.feedback = f"{verdict}. " + " ".join(a for a in advice[:1] if a)
        else:
            self.feedback = f"{verdict}: " + (
                " ".join(a for a in advice if a) or "use several unrelated words."
            )

    def _checked(self, passphrase: str, again: str) -> bool:
        if not passphrase:
            self.error = "Choose a passphrase."
            return False
        if passphrase != again:
            self.error = "The two passphrases differ."
            return False
        strength = estimate_passphrase(passphrase, self._user_inputs())
        if not strength.acceptable:
            hint = strength.warning or "Use several unrelated words."
            self.error = f"This passphrase is too weak. {hint}"
            return False
        self.error = ""
        return True

    def enable(self) -> None:
        if self.busy:
            return
        passphrase, again = self.ids.passphrase.text, self.ids.confirm.text
        if not self._checked(passphrase, again):
            return
        self.busy = True
        self.progress = "Protecting your backup key with the passphrase\u2026"
        self.tidings.tasks.spawn(
            self._enable(passphrase), on_done=self._enabled, on_error=self._failed
        )

    async def _enable(self, passphrase: str) -> int:
        client = self.client
        await client.enable_backup(passphrase)
        self.progress = "Uploading your history\u2026"
        return await client.backup_now(self._uploaded)

    def _uploaded(self, done: int, total: int) -> None:
        self.progress = f"Uploading your history\u2026 {done} of {total} pages"

    def _enabled(self, pages: int) -> None:
        self.busy = False
        self.ids.passphrase.text = ""
        self.ids.confirm.text = ""
        self.progress = f"Backup is on: {pages} {'page' if pages == 1 else 'pages'} uploaded."
        self.tidings.notify("Backup is on")
        self.refresh()

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.progress = ""
        self.error = exc.message if isinstance(exc, ClientError) and exc.message else str(exc)

    # ------------------------------------------------------------------ when on

    def change_passphrase(self) -> None:
        if self.busy:
            return
        old = self.ids.old_passphrase.text
        new, again = self.ids.new_passphrase.text, self.ids.new_confirm.text
        if not old:
            self.error = "Enter the current passphrase."
            return
        if not self._checked(new, again):
            return
        self.busy = True
        self.progress = "Changing the passphrase\u2026"
        self.tidings.tasks.spawn(
            self.client.change_passphrase(old, new), on_done=self._changed, on_error=self._failed
        )

    def _changed(self, _result: Any) -> None:
        self.busy = False
        self.progress = "The passphrase was changed."
        for name in ("old_passphrase", "new_passphrase", "new_confirm"):
            self.ids[name].text = ""

    def backup_now(self) -> None:
        if self.busy:
            return
        self.busy = True
        self.progress = "Uploading\u2026"
        self.tidings.tasks.spawn(
            self.client.backup_now(self._uploaded), on_done=self._enabled, on_error=self._failed
        )

    def export(self) -> None:
        choose_file("Export the backup to", save_as="tidings-backup.tdb", on_chosen=self._export)

    def _export(self, path: Path) -> None:
        self.busy = True
        self.error = ""
        self.progress = "Exporting\u2026"

        def progress(done: int, total: int) -> None:
            self.progress = f"Exporting\u2026 {done} of {total} pages"

        self.tidings.tasks.spawn(
            self.client.export_backup(path, progress),
            on_done=lambda pages: self._done(f"{pages} pages written to {path}"),
            on_error=self._failed,
        )

    def import_(self) -> None:
        passphrase = self.ids.import_passphrase.text
        if not passphrase:
            self.error = "Enter the passphrase of the export file first."
            return
        choose_file("Import a backup file", on_chosen=lambda p: self._import(p, passphrase))

    def _import(self, path: Path, passphrase: str) -> None:
        self.busy = True
        self.error = ""
        self.progress = "Importing\u2026"
        self.tidings.tasks.spawn(
            self.client.import_backup(path, passphrase),
            on_done=lambda added: self._done(f"{added} messages imported from {path.name}"),
            on_error=self._failed,
        )

    def _done(self, text: str) -> None:
        self.busy = False
        self.progress = text
        self.ids.import_passphrase.text = ""
        self.refresh()
