"""Profiles of a gateway child: py-spy attached for a window when it is installed, else cProfile for the
child's whole life. Both are summarised as the functions with the most own and inclusive time."""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["py-spy", "cprofile"]


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> Kind:
    return "py-spy" if py_spy() is not None else "cprofile"


@dataclass(frozen=True, slots=True)
class Profile:
    """Where one profile goes, and how the gateway child must be started for it."""

    kind: Kind
    path: Path

    def python_prefix(self) -> tuple[str, ...]:
        """The interpreter command of the profiled child (cProfile wraps the whole process)."""
        if self.kind == "cprofile":
            return (sys.executable, "-m", "cProfile", "-o", str(self.path))
        return (sys.executable,)

    @contextlib.asynccontextmanager
    async def window(self, pid: int) -> AsyncIterator[None]:
        """Sample `pid` while the block runs (py-spy); cProfile records the whole process anyway."""
        if self.kind == "cprofile":
            yield
            return
        binary = py_spy()
        assert binary is not None
        process = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--nonblocking",
            "--function",
            "--format",
            "raw",
            "--output",
            str(self.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attached before the work starts
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass(frozen=True, slots=True)
class Entry:
    function: str
    own: float  # share of samples (py-spy) or seconds (cProfile) spent in the function itself
    inclusive: float


def summarise(profile: Profile, *, top: int = 15) -> tuple[str, list[Entry]]:
    """(unit, the `top` functions by own time)."""
    if profile.kind == "cprofile":
        stats = pstats.Stats(str(profile.path))
        rows = [
            Entry(f"{func[2]} ({Path(func[0]).name}:{func[1]})", tottime, cumtime)
            for func, (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        ]
        rows.sort(key=lambda entry: entry.own, reverse=True)
        return "s", rows[:top]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in profile.path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return "share", []
    return "share", [Entry(name, n / total, inclusive[name] / total) for name, n in own.most_common(top)]


def _frame(frame: str) -> str:
    """py-spy's `function (path/to/module.py:line)` as `function (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(module).name})" if module else name
