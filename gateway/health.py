"""The readiness of a process: conditions its components report, read when a probe asks.

Kept below the roles and the API: a component that reports a condition need not import the API that
serves `/readyz`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    """Readiness conditions, each read from the component that owns it when a probe asks."""

    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    shutting_down: bool = False

    def watch(self, name: str, check: Callable[[], bool]) -> None:
        self.checks[name] = check

    def set(self, name: str, ok: bool) -> None:
        """A condition that changes only when its owner says so."""
        self.checks[name] = lambda: ok

    def conditions(self) -> dict[str, bool]:
        return {name: check() for name, check in self.checks.items()}

    @property
    def ready(self) -> bool:
        return not self.shutting_down and all(self.conditions().values())
