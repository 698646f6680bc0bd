from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.settings import Settings
from tests.delivery._support import delivery_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings with the delivery ones of `delivery_settings`."""
    return delivery_settings(settings)


_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the "reliability figures" section at the end of the run, so that a figure
    shows in `make test` output, where a test's own prints are captured."""
    return request.config.stash.setdefault(_FIGURES, []).append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
