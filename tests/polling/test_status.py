"""The book of last polls that the console's health dots read."""

from __future__ import annotations

from gateway.polling.status import PollReport, PollStatus


def test_the_last_report_of_each_resource_and_the_newest_failure_are_kept() -> None:
    status = PollStatus()
    status.track("i", frozenset({"accounts", "contacts"}))
    assert status.polls("i") == {"accounts", "contacts"}
    assert status.last("i") == {}
    assert status.last_failure("i") is None
    status.record("i", "accounts", PollReport(at=1.0, ok=False, duration_seconds=0.1, error="boom"))
    status.record("i", "contacts", PollReport(at=2.0, ok=False, duration_seconds=0.1, error="later"))
    status.record("i", "accounts", PollReport(at=3.0, ok=True, duration_seconds=0.1))
    assert {name: report.ok for name, report in status.last("i").items()} == {
        "accounts": True,
        "contacts": False,
    }
    failure = status.last_failure("i")
    assert failure is not None
    assert failure[0] == "contacts"
    assert failure[1].error == "later"
    # Reconfigured without contacts: its reports go, the others stay.
    status.track("i", frozenset({"accounts"}))
    assert set(status.last("i")) == {"accounts"}
    assert status.last_failure("i") == ("accounts", status.of("i")["accounts"].last_failure)
    assert status.of("i")["accounts"].committed_at == 3.0
    status.forget("i")
    assert status.polls("i") == frozenset()
    assert status.last("i") == {}
    assert status.last_failure("i") is None
