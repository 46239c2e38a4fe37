"""Push providers against their stand-ins, the dispatcher and the decision table."""

import sys
from pathlib import Path

# `make test` runs `python -m pytest` from the repository root, which makes `tests.standins`
# importable; this keeps a bare `pytest tests/unit/push` working too.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
