"""Kafka dies first: Ctrl-C reaches a broker that `make` started as well as the gateway, or the
cluster fails under it. `event-gateway run` and `make demo` still stop within their bound, with
status 0, and without asyncio's complaints of tasks destroyed while pending or clients left open.

`make kafka-up` says whose broker answers, since a reused one has its log elsewhere and outlives
`make kafka-down`.

Each test starts a private broker of its own (`.ci/kafka.sh` with another port and state directory),
so that killing it leaves the shared one alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import ROOT, wait_for
from tests.delivery._support import receiving
from tests.polling._processes import GatewayProcess, accounts_instance, free_port, gateway_env

ASYNCIO_COMPLAINTS = (
    "Task was destroyed but it is pending",
    "Unclosed",
    "Task exception was never retrieved",
    "Traceback",
)
_USER, _PASSWORD = next(iter(DEMO_USERS.items()))


@dataclass(frozen=True)
class PrivateBroker:
    bootstrap: str
    pid: int

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _free_port_pair() -> int:
    """A port whose successor is free too: the broker's listener and its controller's."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[PrivateBroker]:
    port = _free_port_pair()
    state = tmp_path / "kafka"
    env = {name: value for name, value in os.environ.items() if name != "GATEWAY_KAFKA_BOOTSTRAP_SERVERS"}
    env.update(KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(state))
    started = await asyncio.create_subprocess_exec(
        str(ROOT / ".ci" / "kafka.sh"), "up", env=env, stdout=subprocess.DEVNULL
    )
    assert await asyncio.wait_for(started.wait(), timeout=180) == 0
    broker = PrivateBroker(bootstrap=f"localhost:{port}", pid=int((state / "broker.pid").read_text()))
    try:
        yield broker
    finally:
        broker.kill()


def _complaints(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if any(c in line for c in ASYNCIO_COMPLAINTS) and not _inside_aiokafka(line)
    ]


def _inside_aiokafka(line: str) -> bool:
    """aiokafka's own account of a broker that vanished mid-transaction: its sender logs the error, and
    can leave a produce task or a shielded abort with an exception nobody retrieves (a race in the
    library, seen once in CI: aio-libs/aiokafka#907). None of our code is in such a record, so it says
    nothing of how the gateway stopped; a complaint that has a frame of ours still counts."""
    with contextlib.suppress(ValueError):
        record = json.loads(line)
        if not isinstance(record, dict):
            return False
        logger = str(record.get("logger", ""))
        text = f"{record.get('message', '')}\n{record.get('exception', '')}"
        ours = f"{ROOT / 'gateway'}/" in text
        return not ours and (logger.startswith("aiokafka") or (logger == "asyncio" and "/aiokafka/" in text))
    return False


def test_only_complaints_without_a_frame_of_ours_are_put_down_to_aiokafka() -> None:
    library = "/venv/lib/python3.11/site-packages/aiokafka/producer/sender.py"
    theirs = {
        "logger": "asyncio",
        "message": "Task exception was never retrieved",
        "exception": f'Traceback (most recent call last):\n  File "{library}", line 288',
    }
    ours = {**theirs, "exception": theirs["exception"] + f'\n  File "{ROOT / "gateway" / "tasks.py"}"'}
    sender = {"logger": "aiokafka.producer.sender", "message": "Unexpected error", "exception": "Traceback"}
    output = "\n".join(json.dumps(record) for record in (theirs, ours, sender))
    assert _complaints(output + "\nTask was destroyed but it is pending!") == [
        json.dumps(ours),
        "Task was destroyed but it is pending!",
    ]


@pytest.mark.timeout(180)
async def test_run_stops_cleanly_when_the_broker_died_first(
    private_broker: PrivateBroker, unique: str, tmp_path: Path
) -> None:
    async with Simulator(users=DEMO_USERS, seed=5) as sim, receiving() as receiver:
        sim.state.bulk_load("accounts", 20)
        env = gateway_env(
            private_broker.bootstrap,
            f"gone-{unique}",
            callback_allowed_networks="127.0.0.0/8",
            shutdown_timeout_seconds="15",
        )
        body = accounts_instance(sim, user=_USER, password=_PASSWORD, page_size=10, snapshot=True)
        body["configuration"]["event.notification.callback.url"] = receiver.url
        gateway = GatewayProcess(env, tmp_path / "gateway.log")
        await gateway.start()
        try:
            await gateway.create_instance(body)
            await wait_for(lambda: len(receiver.hits) >= 20, within=60)
            changes = asyncio.create_task(_keep_changing(sim))
            try:
                private_broker.kill()
                status = await gateway.terminate(within=60)
            finally:
                changes.cancel()
        finally:
            await gateway.kill()
    output = gateway.log.read_text()
    assert _complaints(output) == []
    assert status == 0, gateway.tail()


async def _keep_changing(sim: Simulator) -> None:
    """Changes while the gateway shuts down, so that it has polls and deliveries to stop (at most a
    minute's worth: the test cancels it once the gateway has stopped)."""
    for _ in range(1200):
        sim.state.bulk_load("accounts", 1)
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
async def test_the_demo_stops_cleanly_when_the_broker_died_first(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(
        GATEWAY_KAFKA_BOOTSTRAP_SERVERS=private_broker.bootstrap,
        GATEWAY_API_PORT=str(free_port()),
        GATEWAY_METRICS_PORT=str(free_port()),
    )
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.demo",
            "--simulator-port",
            str(free_port()),
            "--receiver-port",
            str(free_port()),
            env=env,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        # A webhook received and checked: polls, transactions and deliveries are all under way.
        await wait_for(lambda: b"signatures ok" in out.read_bytes(), within=90)
        private_broker.kill()
        demo.send_signal(signal.SIGINT)
        status = await asyncio.wait_for(demo.wait(), timeout=60)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    output = out.read_text() + err.read_text()
    assert _complaints(output) == []
    assert status == 0, output[-3000:]
    assert "demo stopped" in output


async def _kafka_up(port: str, state: Path) -> str:
    env = {name: value for name, value in os.environ.items() if name != "GATEWAY_KAFKA_BOOTSTRAP_SERVERS"}
    env.update(KAFKA_PORT=port, KAFKA_STATE_DIR=str(state))
    script = await asyncio.create_subprocess_exec(
        str(ROOT / ".ci" / "kafka.sh"), "up", env=env, stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(script.communicate(), timeout=60)
    assert script.returncode == 0
    return out.decode()


@pytest.mark.timeout(180)
async def test_kafka_up_says_whose_broker_answers(private_broker: PrivateBroker, tmp_path: Path) -> None:
    port = private_broker.bootstrap.rsplit(":", 1)[1]
    ours = await _kafka_up(port, tmp_path / "kafka")
    assert f"the broker this checkout started (pid {private_broker.pid})" in ours
    assert str(tmp_path / "kafka" / "server.log") in ours
    theirs = await _kafka_up(port, tmp_path / "another-checkout")
    assert "reusing the broker that already answers" in theirs
    assert "`make kafka-down` leaves it running" in theirs
    assert not (tmp_path / "another-checkout" / "broker.pid").exists()
