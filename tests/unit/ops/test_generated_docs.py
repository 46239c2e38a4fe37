"""The generated pages of docs/ equal what the code makes of them now: a setting, a frame or a
close code that changed without `python tools/gen_docs.py` fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tidings.protocol import close, docgen, frames
from tidings.server import configdoc
from tidings.server.config import ServerConfig

DOCS = Path(__file__).resolve().parents[3] / "docs"
FIX = "regenerate it: python tools/gen_docs.py"


def test_configuration_md_is_generated_from_the_settings():
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == configdoc.render(), FIX


def test_protocol_md_is_generated_from_the_frames():
    assert (DOCS / "protocol.md").read_text(encoding="utf-8") == docgen.render(), FIX


def test_every_setting_is_documented_with_env_var_toml_key_and_default():
    page = configdoc.render()
    for field in dataclasses.fields(ServerConfig):
        assert f"\n### {field.name}\n" in page
        assert f"`TIDINGS_{field.name.upper()}`" in page or field.name == "data_dir"
    assert "(undocumented)" not in page, "a setting without a #: comment in server/config.py"


def test_protocol_md_lists_every_frame_and_close_code():
    page = docgen.render()
    for union in (frames.ClientFrame, frames.ServerFrame):
        for cls in union.__args__:
            assert f": {cls.__name__}\n" in page
    for code in close.CloseCode:
        assert f"| {int(code)} | {code.name} |" in page
