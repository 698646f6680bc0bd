"""A Kubernetes API on 127.0.0.1 that serves StatefulSets as `GET .../statefulsets/<name>` answers them,
and the service-account files that Kubernetes mounts into a pod: what a departing replica reads."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = "service-account-token-not-a-real-one"
NAMESPACE = "apps"


def service_account(directory: Path, *, namespace: str = NAMESPACE) -> Path:
    """The files of a pod's service account (`token`, `namespace`), as the kubelet mounts them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(TOKEN + "\n")
    (directory / "namespace").write_text(namespace)
    return directory


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 whose certificate is its own CA, written to
    `directory/ca.crt` as a cluster's CA is mounted into a pod."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "ca.crt", directory / "server.key")
    return context


@dataclass
class KubernetesApi:
    """`replicas`: the StatefulSets of the namespace by name (absent: 404). `status` and `body`, when
    set, replace every answer; `hang` keeps every request waiting until the server stops."""

    replicas: dict[str, int] = field(default_factory=dict)
    status: int | None = None
    body: bytes | None = None
    hang: bool = False
    url: str = ""
    asked: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def _statefulset(self, request: web.Request) -> web.Response:
        self.asked.append((request.path, request.headers.get("Authorization")))
        if self.hang:
            await self._stopping.wait()
        if self.status is not None or self.body is not None:
            return web.Response(
                status=self.status or 200, body=self.body or b"{}", content_type="application/json"
            )
        name = request.match_info["name"]
        if request.match_info["namespace"] != NAMESPACE or name not in self.replicas:
            return web.json_response({"kind": "Status", "reason": "NotFound", "code": 404}, status=404)
        statefulset = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": self.replicas[name], "serviceName": name},
            "status": {"replicas": self.replicas[name]},
        }
        return web.Response(body=orjson.dumps(statefulset), content_type="application/json")


@asynccontextmanager
async def kubernetes_api(
    api: KubernetesApi | None = None, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[KubernetesApi]:
    api = api or KubernetesApi()
    app = web.Application()
    app.router.add_get("/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}", api._statefulset)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        api.url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
        yield api
    finally:
        api._stopping.set()
        await runner.cleanup()
