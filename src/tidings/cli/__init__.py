"""The ``tidings`` command line: :mod:`tidings.cli.main` holds its parser and entry point,
:mod:`tidings.cli.common` what every client command shares, and one module per area beside them.

This package imports nothing itself: a server-only install runs :mod:`tidings.cli.base` and
:mod:`tidings.cli.admin` without the client's libraries (see :mod:`tidings.command`).
"""
