"""Regenerate the generated pages of docs/: ``python tools/gen_docs.py`` (``--check`` fails if
a committed page differs). docs/configuration.md comes from the server's settings,
docs/protocol.md from the WebSocket frames and close codes."""

from __future__ import annotations

import sys
from pathlib import Path

from tidings.protocol import docgen
from tidings.server import configdoc

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = {"configuration.md": configdoc.render, "protocol.md": docgen.render}


def main(argv: list[str]) -> int:
    stale = []
    for name, render in PAGES.items():
        text = render()
        path = DOCS / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        print(f"docs/{name} is stale: run python tools/gen_docs.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
