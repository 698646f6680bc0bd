"""Benchmark 4, idle scale: instances x 7 change-tracking resources, each polled every `refresh` seconds,
against a simulator whose tables stay empty, so that every poll finds no changes. The gateway
(`event-gateway run --role poller`) runs in its own process; its CPU time and resident memory are read
from /proc.

One step per poller count (1,000, 7,000 and 20,000 by default), each in a fresh gateway: start, let every
poller make its first poll (the change-tracking baseline), then measure over a window. CPU per empty poll
is the gateway's whole CPU time in the window (heartbeats, metrics and timers included) divided by the
polls completed in it; RSS is the most seen in the window. An empty poll still commits its checkpoint,
because every change-tracking answer carries a new delta token.

Growth is linear or better when the marginal memory per poller of the upper step is not above that of the
lower step, and CPU per poll does not rise with the poller count; both allow 20 % for measuring noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._gateway import Gateway, Metrics, owns_partitions, put_instances
from bench._instances import RESOURCES, instance_body
from bench._kafka import scratch_prefix
from bench._procs import Child, answers, free_port, load_average, running, until, usage
from bench._profiler import Profile
from bench._report import Check, Result

TARGET_CPU_MS = 0.5
TARGET_RSS_MB = 300.0
GROWTH_TOLERANCE = 1.2


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleConfig:
    pollers: tuple[int, ...] = (1_000, 7_000, 20_000)
    main: int = 7_000  # the step the CPU and RSS targets are checked at
    windows: tuple[float, ...] = (60.0, 120.0, 60.0)  # seconds, per step
    refresh_seconds: float = 60.0
    max_warmup_seconds: float = 300.0
    state_partitions: int = 12  # the deployment default; the smoke test uses fewer


@dataclass(frozen=True, slots=True)
class _Step:
    pollers: int
    instances: int
    window_seconds: float
    polls: float
    cpu_seconds: float
    system_seconds: float
    rss_max: int
    rss_end: int
    warmup_seconds: float
    failed_polls: float

    @property
    def cpu_ms_per_poll(self) -> float:
        return self.cpu_seconds / self.polls * 1000 if self.polls else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {
            "pollers": self.pollers,
            "instances": self.instances,
            "window_seconds": self.window_seconds,
            "polls": self.polls,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_ms_per_poll": round(self.cpu_ms_per_poll, 4),
            "system_share_of_cpu": round(self.system_seconds / self.cpu_seconds, 3)
            if self.cpu_seconds
            else 0.0,
            "rss_max_mb": round(self.rss_max / 2**20, 1),
            "rss_end_mb": round(self.rss_end / 2**20, 1),
            "warmup_seconds": round(self.warmup_seconds, 1),
            "failed_polls": self.failed_polls,
        }


async def run(config: IdleConfig, *, bootstrap: str, log_dir: Path, profile: Profile | None = None) -> Result:
    """`profile`, when given, profiles the gateway of the main step."""
    load = load_average()
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    simulator = Child("idle-simulator", ["-m", "bench._sim_server", "--port", str(port)], log_dir=log_dir)
    steps: list[_Step] = []
    async with running(simulator, answers(f"{sim_url}/_sim/tables")):
        for pollers, window in zip(config.pollers, config.windows, strict=True):
            async with scratch_prefix(bootstrap) as prefix:
                step_profile = profile if pollers == config.main else None
                steps.append(
                    await _step(config, pollers, window, sim_url, bootstrap, log_dir, prefix, step_profile)
                )
    main = next(step for step in steps if step.pollers == config.main)
    checks = [
        Check(
            f"CPU per empty poll ({main.pollers:,} pollers)", main.cpu_ms_per_poll, "<=", TARGET_CPU_MS, "ms"
        ),
        Check(f"RSS at {main.pollers:,} pollers", main.rss_max / 2**20, "<=", TARGET_RSS_MB, "MB"),
    ]
    growth: dict[str, float] = {}
    if len(steps) >= 3:
        low, mid, high = steps[0], steps[1], steps[2]
        lower = (mid.rss_max - low.rss_max) / (mid.pollers - low.pollers)
        upper = (high.rss_max - mid.rss_max) / (high.pollers - mid.pollers)
        growth = {
            "rss_kb_per_poller_lower": round(lower / 1024, 2),
            "rss_kb_per_poller_upper": round(upper / 1024, 2),
            "rss_marginal_ratio": round(upper / lower, 3) if lower > 0 else float("inf"),
            "cpu_per_poll_ratio": round(high.cpu_ms_per_poll / mid.cpu_ms_per_poll, 3),
        }
        checks += [
            Check(
                "RSS growth: upper/lower marginal",
                growth["rss_marginal_ratio"],
                "<=",
                GROWTH_TOLERANCE,
                "ratio",
            ),
            Check(
                f"CPU per poll {high.pollers:,} / {mid.pollers:,}",
                growth["cpu_per_poll_ratio"],
                "<=",
                GROWTH_TOLERANCE,
                "ratio",
            ),
        ]
    return Result(
        name="idle",
        rate=main.polls / main.window_seconds,
        unit="polls/s",
        checks=checks,
        details={
            "steps": [step.as_json() for step in steps],
            "growth": growth,
            "load_average_at_start": load,
        },
        config={
            "pollers": list(config.pollers),
            "windows_seconds": list(config.windows),
            "refresh_seconds": config.refresh_seconds,
            "resources_per_instance": len(RESOURCES),
        },
        notes=[
            "each step is a fresh gateway process; the simulator (service protection off) is shared",
            "CPU per poll counts all of the gateway's CPU in the window, divided by the polls in it",
        ],
    )


async def _step(
    config: IdleConfig,
    pollers: int,
    window: float,
    sim_url: str,
    bootstrap: str,
    log_dir: Path,
    prefix: str,
    profile: Profile | None,
) -> _Step:
    instances = -(-pollers // len(RESOURCES))
    gateway = Gateway(
        f"idle-gateway-{pollers}",
        log_dir=log_dir,
        bootstrap=bootstrap,
        prefix=prefix,
        settings={"GATEWAY_STATE_PARTITIONS": str(config.state_partitions), "GATEWAY_LOG_LEVEL": "WARNING"},
        python=profile.python_prefix() if profile else (sys.executable,),
    )
    bodies = [
        instance_body(f"idle-{prefix}-{i}", sim_url, refresh_seconds=config.refresh_seconds)
        for i in range(instances)
    ]
    async with running(gateway, owns_partitions(gateway, config.state_partitions)):
        started = time.monotonic()
        await put_instances(bootstrap, prefix, bodies, state_partitions=config.state_partitions)
        total = instances * len(RESOURCES)

        async def all_polled() -> bool:
            return (await gateway.metrics()).total("gateway_polls_total", outcome="ok") >= total

        await until(
            all_polled, every=1.0, within=config.max_warmup_seconds, what=f"a first poll by {total} pollers"
        )
        warmup = time.monotonic() - started
        before = await gateway.metrics()
        async with profile.window(gateway.pid) if profile else contextlib.nullcontext():
            first = usage(gateway.pid)
            rss_max = first.rss_bytes
            deadline = first.at + window
            while (now := time.monotonic()) < deadline:
                await asyncio.sleep(min(2.0, deadline - now))
                rss_max = max(rss_max, usage(gateway.pid).rss_bytes)
            last = usage(gateway.pid)
        text = await gateway.metrics_text()
        (log_dir / f"{gateway.name}.metrics").write_text(text)
        after = Metrics(text)
    published = after.total("gateway_events_published_total")
    if published:
        raise RuntimeError(f"{published} events were published from tables that should stay empty")
    return _Step(
        pollers=total,
        instances=instances,
        window_seconds=last.at - first.at,
        polls=after.total("gateway_polls_total", outcome="ok")
        - before.total("gateway_polls_total", outcome="ok"),
        cpu_seconds=last.cpu_seconds - first.cpu_seconds,
        system_seconds=last.system_seconds - first.system_seconds,
        rss_max=max(rss_max, last.rss_bytes),
        rss_end=last.rss_bytes,
        warmup_seconds=warmup,
        failed_polls=after.total("gateway_polls_total", outcome="failed"),
    )
