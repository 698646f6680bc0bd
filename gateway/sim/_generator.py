"""A live source of changes: creates, updates and deletes rows at a steady rate."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from gateway.sim._records import ENTITY_SETS
from gateway.sim._store import DataverseState

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.05
_UPDATABLE = ("description", "telephone1", "subject", "name", "statuscode")


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratorSettings:
    """`rate` changes per second over `tables`, mixed by the weights `create`, `update` and `delete`."""

    rate: float
    tables: tuple[str, ...] = ENTITY_SETS
    create: float = 0.3
    update: float = 0.6
    delete: float = 0.1

    def __post_init__(self) -> None:
        if self.rate <= 0 or not self.tables:
            raise ValueError("the generator needs a positive rate and at least one table")
        if min(self.create, self.update, self.delete) < 0 or self.create + self.update + self.delete <= 0:
            raise ValueError("the mix weights must be non-negative and not all zero")


class ChangeGenerator:
    """Owns one background task at most; `stop()` cancels it and re-raises a crash it had."""

    def __init__(self, state: DataverseState, rng: random.Random) -> None:
        self._state = state
        self._rng = rng
        self._task: asyncio.Task[None] | None = None
        self.settings: GeneratorSettings | None = None
        self.changes = 0  # applied since the simulator started

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, settings: GeneratorSettings) -> None:
        """Run with `settings`, replacing a run already going."""
        for table in settings.tables:
            self._state.table(table)
        await self.stop()
        self.settings = settings
        self._task = asyncio.create_task(self._run(settings), name="sim-change-generator")
        self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # our caller is cancelled too
                raise

    async def _run(self, settings: GeneratorSettings) -> None:
        loop = asyncio.get_running_loop()
        started, done = loop.time(), 0
        while True:
            due = int((loop.time() - started) * settings.rate) - done
            for _ in range(due):
                self._change(settings)
                done += 1
            await asyncio.sleep(min(_TICK_SECONDS, 1 / settings.rate))

    def _change(self, settings: GeneratorSettings) -> None:
        """Apply one random change as `settings` mix them."""
        rng, state = self._rng, self._state
        table = rng.choice(settings.tables)
        action = rng.choices(
            ("create", "update", "delete"), (settings.create, settings.update, settings.delete)
        )[0]
        record_id = None if action == "create" else state.random_id(table)
        if record_id is None:
            state.upsert(table)
        elif action == "update":
            columns = state.table(table).spec.columns
            column = next(c for c in rng.sample(_UPDATABLE, len(_UPDATABLE)) if c in columns)
            value = (
                rng.randrange(1, 3) if column == "statuscode" else f"Changed by the generator #{self.changes}"
            )
            state.update(table, record_id, {column: value})
        else:
            state.delete(table, record_id)
        self.changes += 1


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("the simulator's change generator stopped", exc_info=error)
