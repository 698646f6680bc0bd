"""Child processes of a benchmark (simulator, gateway, receiver) and their CPU and memory from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) and resident memory of one process at one instant."""

    at: float  # monotonic
    cpu_seconds: float
    rss_bytes: int
    system_seconds: float = 0.0  # the part of cpu_seconds spent in the kernel


def usage(pid: int) -> Usage:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
        fields = stat.read().rsplit(b")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    with open(f"/proc/{pid}/statm", "rb") as statm:
        resident_pages = int(statm.read().split()[1])
    return Usage(
        time.monotonic(), (utime + stime) / _CLOCK_TICKS, resident_pages * _PAGE, stime / _CLOCK_TICKS
    )


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours without GATEWAY_* (a stray one must not leak in), plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Child:
    """A Python child process whose output goes to a log file; it is ready when `ready()` says so."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        python: Sequence[str] = (sys.executable,),
    ) -> None:
        self.name = name
        self.argv = [*python, *argv]
        self.log = log_dir / f"{name}.log"
        self._env = child_env(env)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    def usage(self) -> Usage:
        return usage(self.pid)

    @property
    def exited(self) -> bool:
        """Whether it was started and has ended since."""
        return self._process is not None and self._process.returncode is not None

    async def start(self, ready: Callable[[], Awaitable[bool]], *, within: float = 60.0) -> None:
        with self.log.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self._env,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + within
        while not await ready():
            if self._process.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not ready within {within} s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    async def stop(self, *, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
        process = self._process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                return await process.wait()
        except TimeoutError:
            process.kill()
            return await process.wait()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no output)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def running(
    child: Child, ready: Callable[[], Awaitable[bool]], *, within: float = 60.0
) -> AsyncIterator[Child]:
    try:
        await child.start(ready, within=within)
        yield child
    finally:
        await child.stop()


def answers(url: str, *, status: int = 200) -> Callable[[], Awaitable[bool]]:
    """A readiness check: `GET url` answers `status`."""

    async def check() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(url) as response,
            ):
                return response.status == status
        except (aiohttp.ClientError, TimeoutError):
            return False

    return check


async def run_to_end(child: Child, *, within: float) -> None:
    """Start `child` and wait for it to exit 0 within `within` seconds."""
    await child.start(_always)
    process = child._process
    assert process is not None
    try:
        async with asyncio.timeout(within):
            code = await process.wait()
    except TimeoutError:
        await child.stop(grace=1)
        raise TimeoutError(f"{child.name} did not finish within {within} s:\n{child.tail()}") from None
    if code != 0:
        raise RuntimeError(f"{child.name} exited with {code}:\n{child.tail()}")


async def _always() -> bool:
    return True


def broker_pid() -> dict[str, int]:
    """{"broker": pid} of the local broker `.ci/kafka.sh` started, when there is one."""
    pidfile = ROOT / ".cache" / "kafka" / "broker.pid"
    try:
        pid = int(pidfile.read_text().strip())
        usage(pid)
    except (OSError, ValueError):
        return {}
    return {"broker": pid}


class CpuMeter:
    """CPU seconds each of some processes used since the meter was made."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._start = {name: usage(pid).cpu_seconds for name, pid in self._pids.items()}

    def seconds(self) -> dict[str, float]:
        return {name: usage(pid).cpu_seconds - self._start[name] for name, pid in self._pids.items()}


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: how busy it was besides the benchmark."""
    return [round(value, 2) for value in os.getloadavg()]


async def until(condition: Callable[[], Awaitable[bool]], *, every: float, within: float, what: str) -> None:
    """Ask `condition` every `every` seconds until it holds; TimeoutError naming `what` after `within`."""
    try:
        async with asyncio.timeout(within):
            while True:
                if await condition():
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        raise TimeoutError(f"not within {within} s: {what}") from None
