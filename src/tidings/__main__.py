"""``python -m tidings`` is the ``tidings`` command."""

import sys

from tidings.command import main

sys.exit(main())
