"""Attachments through the ``tidings`` command, one subprocess per command, against a real
server: a photo (with a caption), a voice note and a document go from alice to bob; bob sees
their metadata in ``history --json`` and their tags in the human ``history``, downloads them
(with a progress bar on standard error, never in ``--json`` output) and gets exactly the bytes
alice's client prepared: the document unchanged, the photo re-encoded upright without
metadata, the voice note as Ogg Opus."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.e2e.test_cli_chat import by_id
from tests.e2e.test_cli_everyday import accounts, human
from tests.integration.media_kit import document, exif_photo, tone_wav

MARKER = "CLI-MEDIA-MARKER-51d0"


@pytest.mark.timeout(400)
def test_photo_voice_and_document_through_the_cli(server: Any, tmp_path: Path) -> None:
    alice, bob = accounts(server, tmp_path, "alice", "bob")
    photo = exif_photo(tmp_path / "IMG_0042.jpg", MARKER)
    voice = tone_wav(tmp_path / "memo.wav", seconds=6.0)
    doc = document(tmp_path / "report.pdf", MARKER, size=1_300_000)

    sent_photo = alice.ok("send", "@bob", "--file", str(photo), "--caption", "the view")
    assert sent_photo["status"] == "sent"
    (meta,) = sent_photo["attachments"]
    assert meta["kind"] == "image" and (meta["width"], meta["height"]) == (960, 1280)
    sent_voice = alice.ok("send", "@bob", "--voice", str(voice))
    # people see an upload bar on stderr and the message id with its tag on stdout
    shown = human(alice, "send", "@bob", "--file", str(doc))
    assert shown.returncode == 0, shown.stderr
    assert "sending report.pdf [" in shown.stderr and "100%" in shown.stderr
    doc_id, tag = shown.stdout.strip().split("  ", 1)
    assert tag == "[file report.pdf 1.2 MB]"

    synced = bob.ok("sync")
    got_photo = by_id(synced["messages"], sent_photo["id"])
    assert got_photo["body"] == "the view"
    history = bob.ok("history", "@alice")["messages"]
    (photo_meta,) = by_id(history, sent_photo["id"])["attachments"]
    assert photo_meta["kind"] == "image" and photo_meta["content_type"] == "image/jpeg"
    assert (photo_meta["width"], photo_meta["height"]) == (960, 1280)
    assert photo_meta["blurhash"] and 0 < photo_meta["size"] < photo.stat().st_size
    (voice_meta,) = by_id(history, sent_voice["id"])["attachments"]
    assert voice_meta["kind"] == "voice" and abs(voice_meta["duration_ms"] - 6000) < 100
    assert len(voice_meta["waveform"]) == 64 and max(voice_meta["waveform"]) == 255
    (doc_meta,) = by_id(history, doc_id)["attachments"]
    assert doc_meta["file_name"] == "report.pdf" and doc_meta["size"] == doc.stat().st_size
    assert doc_meta["path"] is None and doc_meta["state"] == "remote"

    lines = human(bob, "history", "@alice").stdout
    assert "[photo 960\u00d71280 " in lines and " KB] the view" in lines
    assert "[voice 0:06]" in lines
    assert "[file report.pdf 1.2 MB]" in lines

    # bob downloads: a bar on stderr for people, nothing but JSON on stdout with --json
    out = tmp_path / "bob-downloads"
    fetched = human(bob, "download", doc_id, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert "downloading file [" in fetched.stderr and "100%" in fetched.stderr
    assert (out / "report.pdf").read_bytes() == doc.read_bytes()
    assert fetched.stdout.strip() == str(out / "report.pdf")
    quiet = bob.run("download", sent_voice["id"], "-o", str(out))
    assert quiet.stderr == ""
    (voice_file,) = json.loads(quiet.stdout)["files"]
    photo_file = bob.ok("download", sent_photo["id"], "-o", str(out))["files"][0]

    # identical to what alice's client prepared (her own copies are in her media cache)
    mine = alice.ok("history", "@bob")["messages"]
    own_photo = Path(by_id(mine, sent_photo["id"])["attachments"][0]["path"])
    own_voice = Path(by_id(mine, sent_voice["id"])["attachments"][0]["path"])
    assert Path(photo_file["path"]).read_bytes() == own_photo.read_bytes()
    assert Path(voice_file["path"]).read_bytes() == own_voice.read_bytes()
    data = Path(photo_file["path"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (960, 1280)
        assert not image.getexif()
    assert MARKER.encode() not in data
    assert Path(voice_file["path"]).read_bytes()[:4] == b"OggS"
    # once downloaded, history --json says where the file is
    history = bob.ok("history", "@alice")["messages"]
    assert by_id(history, doc_id)["attachments"][0]["path"] is not None

    # usage errors
    assert bob.fails("send", "@alice")["code"] == "usage"
    assert bob.fails("send", "@alice", "--voice", str(voice), "--caption", "x")["code"] == "usage"
    assert bob.fails("download", sent_photo["id"], "--index", "3")["code"] == "not_found"
    assert bob.fails("send", "@alice", "--file", str(tmp_path / "nope.jpg"))["code"] == "not_found"
