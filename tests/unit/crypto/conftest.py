"""Two in-process parties for the crypto unit tests."""

from __future__ import annotations

import pytest

from .parties import Party


@pytest.fixture
def alice() -> Party:
    return Party("alice")


@pytest.fixture
def bob() -> Party:
    return Party("bob")
