"""The outcome of each poller's last poll in this process, for the console's health dots."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollReport:
    at: float  # wall-clock start of the poll
    ok: bool
    duration_seconds: float
    error: str | None = None  # the failure's message: the same words the log line has, never a secret


class PollStatus:
    """Last reports by instance and resource. Only the replica that polls a resource knows it: a
    process without pollers (role api) has an empty book."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, PollReport]] = {}
        self._last_failure: dict[str, dict[str, PollReport]] = {}

    def record(self, instance_id: str, resource: str, report: PollReport) -> None:
        self._last.setdefault(instance_id, {})[resource] = report
        if not report.ok:
            self._last_failure.setdefault(instance_id, {})[resource] = report

    def last(self, instance_id: str) -> dict[str, PollReport]:
        """The last poll of each resource of the instance that this process polled."""
        return dict(self._last.get(instance_id, {}))

    def last_failure(self, instance_id: str) -> tuple[str, PollReport] | None:
        """The most recent failed poll of any of the instance's resources, and which resource it was."""
        failures = self._last_failure.get(instance_id, {})
        if not failures:
            return None
        resource = max(failures, key=lambda name: failures[name].at)
        return resource, failures[resource]

    def forget(self, instance_id: str) -> None:
        self._last.pop(instance_id, None)
        self._last_failure.pop(instance_id, None)
