"""The end-to-end tests use the same real-server fixtures as the integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parent.parent / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("tidings_tests_integration_conftest", _path)
assert _spec is not None and _spec.loader is not None
_integration = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _integration
_spec.loader.exec_module(_integration)

server_factory = _integration.server_factory
server = _integration.server
store_env = _integration.store_env
pytest_collection_modifyitems = _integration.pytest_collection_modifyitems
pytest_runtest_makereport = _integration.pytest_runtest_makereport
