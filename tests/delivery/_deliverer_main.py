"""A deliverer in its own process, for the crash test: `python -m tests.delivery._deliverer_main CONFIG`.

CONFIG is a JSON file: `{"settings": {<Settings fields>}, "instances": {<id>: <callback URL>}}`.
Prints `ready` once it has joined, then delivers until SIGTERM (or SIGKILL, which is the point).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from tests.delivery._support import delivering, webhook_instance


async def _main(config: dict[str, Any]) -> None:
    settings = Settings.model_validate(config["settings"])
    instances = {key: webhook_instance(key, url) for key, url in config["instances"].items()}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with delivering(settings, instances, CollectorRegistry()):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(orjson.loads(Path(sys.argv[1]).read_bytes())))
