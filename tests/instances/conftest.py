from __future__ import annotations

from typing import Any

import pytest

from .seed_examples import seed_bodies


@pytest.fixture
def body() -> dict[str, Any]:
    """A fresh copy of the 2016 seed body, to modify."""
    return seed_bodies()["2016"]
