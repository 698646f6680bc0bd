"""Benchmark 5, profile: the ingest and delivery benchmarks run again with their gateway profiled, and the
functions with the most own time of each listed.

py-spy (a sampling profiler, `pip install py-spy`) is used when installed, attached to the gateway only
while it works; otherwise cProfile, which profiles the gateway's whole life and slows it down, so the
rates of a profiled run are not the benchmark's. `bench/PROFILE.md` reads these lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import delivery, ingest
from bench._profiler import Kind, Profile, available, summarise
from bench._report import Result


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileConfig:
    ingest: ingest.IngestConfig = field(default_factory=ingest.IngestConfig)
    delivery: delivery.DeliveryConfig = field(default_factory=delivery.DeliveryConfig)
    kind: Kind | None = None  # None: py-spy when installed, else cProfile
    top: int = 15


async def run(config: ProfileConfig, *, bootstrap: str, log_dir: Path) -> Result:
    kind = config.kind or available()
    suffix = "txt" if kind == "py-spy" else "prof"
    ingest_profile = Profile(kind, log_dir / f"profile-ingest.{suffix}")
    delivery_profile = Profile(kind, log_dir / f"profile-delivery.{suffix}")
    ingested = await ingest.run(config.ingest, bootstrap=bootstrap, log_dir=log_dir, profile=ingest_profile)
    delivered = await delivery.run(
        config.delivery, bootstrap=bootstrap, log_dir=log_dir, profile=delivery_profile
    )
    return Result(
        name="profile",
        rate=ingested.rate,
        unit="events/s",
        details={
            "profiler": kind,
            "ingest": _listing(ingest_profile, ingested, config.top),
            "delivery": _listing(delivery_profile, delivered, config.top),
        },
        config={"ingest_records": config.ingest.records, "delivery_events": config.delivery.events},
        notes=[
            "rates measured while profiled; py-spy shares are of the samples taken while the gateway ran "
            "Python code, cProfile figures are seconds over the gateway's whole life",
        ],
    )


def _listing(profile: Profile, result: Result, top: int) -> dict[str, Any]:
    unit, entries = summarise(profile, top=top)
    return {
        "rate_while_profiled": round(result.rate, 1),
        "unit": unit,
        "top_own": [
            {"function": entry.function, "own": round(entry.own, 4), "inclusive": round(entry.inclusive, 4)}
            for entry in entries
        ],
    }
