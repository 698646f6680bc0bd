"""The outcome of each poller's last poll in this process, for the console's health dots."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollReport:
    at: float  # wall-clock start of the poll
    ok: bool
    duration_seconds: float
    fetched: int = 0  # records read from the source
    published: int = 0  # events written to Kafka
    error: str | None = None  # the failure's message: the same words the log line has, never a secret


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    last: PollReport
    committed_at: float | None  # start of the last poll that went well: every change before is in Kafka
    last_failure: PollReport | None


class PollStatus:
    """Last reports by instance and resource, and which resources this process polls. Only the
    replica that polls a resource knows its figures: a process without pollers has no book."""

    def __init__(self) -> None:
        self._resources: dict[str, dict[str, ResourceStatus]] = {}
        self._polled: dict[str, frozenset[str]] = {}  # the resources this process polls, by instance

    def track(self, instance_id: str, resources: frozenset[str]) -> None:
        """This process now polls exactly these resources of the instance; others' reports go."""
        self._polled[instance_id] = resources
        kept = {k: v for k, v in self._resources.get(instance_id, {}).items() if k in resources}
        self._resources[instance_id] = kept

    def polls(self, instance_id: str) -> frozenset[str]:
        return self._polled.get(instance_id, frozenset())

    def record(self, instance_id: str, resource: str, report: PollReport) -> None:
        resources = self._resources.setdefault(instance_id, {})
        before = resources.get(resource)
        if report.ok:
            failure = None if before is None else before.last_failure
            resources[resource] = ResourceStatus(last=report, committed_at=report.at, last_failure=failure)
        else:
            committed_at = None if before is None else before.committed_at
            resources[resource] = ResourceStatus(last=report, committed_at=committed_at, last_failure=report)

    def of(self, instance_id: str) -> dict[str, ResourceStatus]:
        """Each resource of the instance that this process polled."""
        return dict(self._resources.get(instance_id, {}))

    def last(self, instance_id: str) -> dict[str, PollReport]:
        """The last poll of each resource of the instance that this process polled."""
        return {name: status.last for name, status in self._resources.get(instance_id, {}).items()}

    def last_failure(self, instance_id: str) -> tuple[str, PollReport] | None:
        """The most recent failed poll of any of the instance's resources, and which resource it was."""
        failures = {
            name: status.last_failure
            for name, status in self._resources.get(instance_id, {}).items()
            if status.last_failure is not None
        }
        if not failures:
            return None
        resource = max(failures, key=lambda name: failures[name].at)
        return resource, failures[resource]

    def forget(self, instance_id: str) -> None:
        """This process no longer polls the instance (deleted, disabled, or its partition moved)."""
        self._resources.pop(instance_id, None)
        self._polled.pop(instance_id, None)
