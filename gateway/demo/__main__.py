"""`make demo`: the whole pipeline on one machine, on embedded defaults.

A local Kafka (started by the Makefile), the Dataverse simulator generating changes, the gateway
polling it with the seed's "Dynamics 2016 and later" instance into Kafka and delivering each change
as a signed webhook to a sample receiver, which verifies both signatures and prints what it gets.
Ctrl-C stops everything this started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from gateway.demo.receiver import print_summaries, sample_receiver
from gateway.logs import configure_logging
from gateway.runtime import RunningGateway, run_until_stopped
from gateway.settings import Settings
from gateway.sim import DEMO_USERS, GeneratorSettings, Simulator

_TOPIC_PREFIX = "demo"
_STATE_PREFIX = "demo-gateway"
_ADMIN_TOKEN = "demo-admin-token"
_SECRET_KEY = "demo-secret-key-not-for-production-0123456789"
_SIMULATOR_PORT = 8090
_CHANGES_PER_SECOND = 3.0
_SUMMARY_EVERY_SECONDS = 5.0
_SEED_INSTANCE_ID = "demo-dynamics-2016"
_RECEIVER_PORT = 8099
_SIGNATURE_KEY = "demo-signature-key"
_KAFKA_STATE = Path(".cache/kafka")  # where .ci/kafka.sh keeps the broker it starts


def _seed_instance(simulator: Simulator, receiver_port: int) -> dict[str, Any]:
    """The seed's "Dynamics 2016 and later" body, its placeholders filled in for the simulator."""
    user, password = next(iter(DEMO_USERS.items()))
    resources = ("accounts", "contacts", "opportunities", "leads", "tasks", "notes", "activities")
    dates = {
        "updatedDateField": "attributes.modifiedon",
        "updatedDateFormat": "milliseconds",
        "createdDateField": "attributes.createdon",
        "createdDateFormat": "milliseconds",
    }
    return {
        "id": _SEED_INSTANCE_ID,
        "element": {"key": "dynamicscrmadfs"},
        "configuration": {
            "user.username": user,
            "user.password": password,
            "dynamics.tenant": "yourcompanyname.crm.dynamics.com",
            "dynamics.base.url": simulator.base_url,
            "event.notification.enabled": "true",
            "event.notification.callback.url": f"http://127.0.0.1:{receiver_port}/webhooks",
            "event.notification.signature.key": _SIGNATURE_KEY,
            "event.poller.refresh_interval": "0.05",
            "event.poller.configuration": {
                name: {
                    "url": f"/hubs/crm/{name}?where=fetchChanges='true'",
                    "idField": "id",
                    "datesConfiguration": dates,
                }
                for name in resources
            },
        },
        "tags": ["demo"],
        "name": "Dynamics demo",
    }


def _settings() -> Settings:
    # The admin API and metrics listen on the usual ports (8080, 9100) unless GATEWAY_* says otherwise.
    return Settings(
        topic_prefix=_TOPIC_PREFIX,
        state_topic_prefix=_STATE_PREFIX,
        state_partitions=3,
        admin_token=SecretStr(_ADMIN_TOKEN),
        secret_key=SecretStr(_SECRET_KEY),
        # The sample receiver listens on loopback, which the SSRF guard refuses unless allowed.
        callback_allowed_networks=[ipaddress.ip_network("127.0.0.0/8")],
    )


def _declare(instance: dict[str, Any]) -> Path:
    path = Path(".cache/demo/instances.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps([instance], option=orjson.OPT_INDENT_2))
    return path


async def _drop_previous_demo_topics(bootstrap: str) -> None:
    """Each demo starts from a fresh simulator, so the previous run's checkpoints mean nothing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        stale = [
            t for t in await admin.list_topics() if t.startswith((f"{_TOPIC_PREFIX}.", f"{_STATE_PREFIX}."))
        ]
        if stale:
            await admin.delete_topics(stale)
    finally:
        await admin.close()


def _kafka_note(bootstrap: str) -> str:
    """Where the broker's log is, when this checkout's `make kafka-up` started the broker."""
    pidfile = _KAFKA_STATE / "broker.pid"
    if bootstrap in ("localhost:9092", "127.0.0.1:9092") and pidfile.exists():
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text()), 0)
            return f"(log: {_KAFKA_STATE / 'server.log'})"
    return "(a broker this checkout did not start; its log is wherever it runs)"


@dataclass(frozen=True, slots=True)
class DemoPorts:
    simulator: int = _SIMULATOR_PORT
    receiver: int = _RECEIVER_PORT


async def run_demo(stop: asyncio.Event, ports: DemoPorts) -> bool:
    """Run until `stop` is set; whether the gateway then stopped cleanly."""
    settings = _settings()
    bootstrap = settings.kafka_bootstrap_servers
    await _drop_previous_demo_topics(bootstrap)
    async with AsyncExitStack() as stack:
        simulator = await stack.enter_async_context(Simulator(port=ports.simulator, users=DEMO_USERS, seed=1))
        for table in (
            "accounts",
            "contacts",
            "opportunities",
            "leads",
            "tasks",
            "annotations",
            "activitypointers",
        ):
            simulator.state.bulk_load(table, 50)
        await simulator.generator.start(GeneratorSettings(rate=_CHANGES_PER_SECOND))
        stack.push_async_callback(simulator.generator.stop)
        tally = await stack.enter_async_context(
            sample_receiver(host="127.0.0.1", port=ports.receiver, key=_SIGNATURE_KEY)
        )
        instances = await asyncio.to_thread(_declare, _seed_instance(simulator, ports.receiver))
        kafka_note = await asyncio.to_thread(_kafka_note, bootstrap)

        async def report(gateway: RunningGateway) -> None:
            print(
                "\nevent-gateway demo is running (Ctrl-C stops it):\n"
                f"  Kafka               {bootstrap} {kafka_note}\n"
                f"  Dynamics simulator  {simulator.api_url}, {_CHANGES_PER_SECOND:g} changes/s\n"
                f"  web console         {gateway.api_url}/console/  (sign in by pasting the admin token"
                f" {_ADMIN_TOKEN})\n"
                f"  gateway admin API   {gateway.api_url}  (Authorization: Bearer {_ADMIN_TOKEN})\n"
                f"  gateway metrics     {gateway.metrics_url}/metrics\n"
                f"  instance            {instances} (the seed's change-tracking example)\n"
                f"  event topics        {_TOPIC_PREFIX}.crm.<object type>\n"
                f"  sample receiver     http://127.0.0.1:{ports.receiver}/webhooks"
                " (checks both signatures)\n",
                flush=True,
            )
            await print_summaries(tally, _SUMMARY_EVERY_SECONDS)

        # The gateway shuts down as `event-gateway run` does, within its bound, even when Kafka died
        # first (Ctrl-C reaches a broker that `make` started, too); then the simulator and receiver.
        return await run_until_stopped(
            settings, role="all", instances_path=instances, stop=stop, alongside=report
        )


def _ports(argv: Sequence[str] | None) -> DemoPorts:
    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description="the event-gateway demo")
    parser.add_argument("--simulator-port", type=int, default=_SIMULATOR_PORT)
    parser.add_argument("--receiver-port", type=int, default=_RECEIVER_PORT)
    args = parser.parse_args(argv)
    return DemoPorts(simulator=args.simulator_port, receiver=args.receiver_port)


def main(argv: Sequence[str] | None = None) -> int:
    ports = _ports(argv)
    configure_logging("WARNING", role="demo")
    # Right after the demo creates its topics aiokafka logs leader elections as errors; they pass.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def until_signalled() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_demo(stop, ports)

    stopped_cleanly = asyncio.run(until_signalled())
    print("\ndemo stopped", file=sys.stderr)
    return 0 if stopped_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
