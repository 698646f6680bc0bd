"""Wait until a Kafka broker answers a Metadata request; exit 0 then, 1 on timeout.

Standard library only, so that `make kafka-up` works before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time

_METADATA_API_KEY = 3
_METADATA_VERSION = 4  # Kafka 4.x removed versions 0-3 (KIP-896).


def _metadata_request(correlation_id: int) -> bytes:
    client_id = b"kafka-ready"
    header = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id))
    body = struct.pack(">i?", -1, False)  # null topic array = all topics; no auto-creation
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return chunks


def broker_count(host: str, port: int) -> int:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_metadata_request(correlation_id=1))
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        response = _read_exact(sock, size)
    # correlation id (4), throttle_time_ms (4), then the brokers array length.
    (count,) = struct.unpack(">i", response[8:12])
    return int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap", help="host:port[,host:port...]")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    addresses = [a.strip().rsplit(":", 1) for a in args.bootstrap.split(",") if a.strip()]
    while True:
        for host, port in addresses:
            try:
                if broker_count(host, int(port)) > 0:
                    return 0
            except (OSError, struct.error):
                pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.25)


if __name__ == "__main__":
    raise SystemExit(main())
