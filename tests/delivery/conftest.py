from __future__ import annotations

import pytest

from gateway.settings import Settings
from tests.delivery._support import delivery_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings with the delivery ones of `delivery_settings`."""
    return delivery_settings(settings)
