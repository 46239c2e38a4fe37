"""Rebuild the packaged emoji atlas from the npm package ``emoji-datasource-twitter``.

Not used at run time. The committed files in ``tidings/app/emoji/`` were made with::

    npm pack emoji-datasource-twitter@16.0.0 && tar xzf emoji-datasource-twitter-16.0.0.tgz
    python -m tidings.app.text.make_assets package/ src/tidings/app/emoji/

The 64 px, 256-colour sheet of the package is cut into horizontal strips (decoded one at a
time, as palette images: ~2 MB of memory each) and an index maps every emoji sequence (with
its U+FE0F variation selectors removed) to its strip and cell.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from PIL import Image

#: rows of cells per strip
STRIP_ROWS = 8
SHEET = "img/twitter/sheets-256/64.png"


def key_of(unified: str) -> str:
    """The index key of a sequence as the package spells it ("1F469-200D-1F469")."""
    return "-".join(f"{int(p, 16):x}" for p in unified.split("-") if p.upper() != "FE0F")


def build(package: str, out: str) -> dict[str, Any]:
    with open(os.path.join(package, "emoji.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    sheet = Image.open(os.path.join(package, SHEET))
    cell = 66  # 64 px with one pixel of padding on each side
    rows = sheet.size[1] // cell
    index: dict[str, list[int]] = {}

    def add(entry: dict[str, Any]) -> None:
        if not entry.get("has_img_twitter"):
            return
        where = [int(entry["sheet_x"]), int(entry["sheet_y"])]
        for name in (entry.get("unified"), entry.get("non_qualified")):
            if name:
                index.setdefault(key_of(name), where)

    for entry in data:
        add(entry)
        for variation in (entry.get("skin_variations") or {}).values():
            add(variation)
    strips = (rows + STRIP_ROWS - 1) // STRIP_ROWS
    for strip in range(strips):
        top = strip * STRIP_ROWS * cell
        bottom = min(sheet.size[1], top + STRIP_ROWS * cell)
        part = sheet.crop((0, top, sheet.size[0], bottom))
        part.save(os.path.join(out, f"twemoji-{strip}.png"), optimize=True)
    meta = {"cell": cell, "size": 64, "strip_rows": STRIP_ROWS, "emoji": index}
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, separators=(",", ":"), sort_keys=True)
    return meta


def main() -> None:
    meta = build(sys.argv[1], sys.argv[2])
    print(f"{len(meta['emoji'])} sequences")


if __name__ == "__main__":
    main()
