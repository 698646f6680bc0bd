"""Rate limits per subscription: at most `rate` requests a second to one target, evenly spaced.

Each target has a next free turn (the generic cell rate algorithm with a burst of one): a request
takes the turn and moves it `1 / rate` seconds on. A delivery whose turn is at most `MAX_WAIT` away
waits for it in memory; one further away raises `RateLimited` without taking a turn, and is parked
until about then, so that a burst of a thousand events does not hold a thousand tasks and their
records in memory. The limit is per deliverer process: with N replicas a target may receive up to
N times its rate, which the README says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.errors import RateLimited

MAX_WAIT = 1.0  # seconds a delivery may wait in memory for its turn
_PRUNE_AT = 10_000  # targets remembered before those whose turn has passed are forgotten


class RateLimits:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._turns: dict[str, float] = {}  # target -> monotonic time of its next free turn

    async def wait_turn(self, target: str, rate: float) -> None:
        """Wait for the target's next turn, or raise RateLimited when it is over MAX_WAIT away."""
        wait = self.take_turn(target, rate)
        if wait > 0:
            await asyncio.sleep(wait)

    def take_turn(self, target: str, rate: float) -> float:
        """Take the target's next turn: the seconds until it. RateLimited, taking none, when that
        is over MAX_WAIT."""
        now = self._clock()
        turn = max(self._turns.get(target, now), now)
        wait = turn - now
        if wait > MAX_WAIT:
            raise RateLimited(
                f"over its rate limit of {rate:g} requests/s; its next turn is in {wait:.1f} s",
                target=target,
                retry_after=wait,
            )
        self._turns[target] = turn + 1.0 / rate
        if len(self._turns) > _PRUNE_AT:
            self._turns = {key: at for key, at in self._turns.items() if at > now}
        return wait
