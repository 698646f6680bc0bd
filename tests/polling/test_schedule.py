"""When a poller wakes: its interval, then the next step of the wake grid, so that pollers due at about
the same moment run together."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from gateway.polling.task import next_wake

_TIMES = st.floats(min_value=0, max_value=1e7, allow_nan=False)
_DELAYS = st.floats(min_value=0, max_value=86_400, allow_nan=False)
_GRIDS = st.sampled_from([0.05, 0.1, 0.25, 1.0])


@given(now=_TIMES, delay=_DELAYS, grid=_GRIDS)
def test_the_wake_is_the_first_grid_step_at_or_after_the_due_time(
    now: float, delay: float, grid: float
) -> None:
    due = now + delay
    wake = next_wake(now, delay, grid)
    slack = 1e-9 * max(1.0, due)  # float rounding of large loop times
    assert wake >= due - slack
    assert wake - due < grid + slack
    steps = wake / grid
    assert math.isclose(steps, round(steps), rel_tol=1e-9, abs_tol=1e-6)


def test_pollers_due_within_one_step_wake_together() -> None:
    wakes = {next_wake(100.0, delay) for delay in (59.91, 59.95, 59.99, 60.0)}
    assert wakes == {160.0}
    assert math.isclose(next_wake(100.0, 60.01), 160.1)
