from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka broker: the one named by GATEWAY_KAFKA_BOOTSTRAP_SERVERS, or the local one.

    Uses the same script as `make kafka-up`, which reuses a broker that already answers.
    """
    bootstrap = os.environ.get("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    subprocess.run([str(ROOT / ".ci" / "kafka.sh"), "up"], check=True, timeout=600)
    yield bootstrap
