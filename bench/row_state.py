"""Benchmark 8, row state: the ingest benchmark with the row-state topic on (issue 13), as a ratio to
the same benchmark with it off, run one after the other in this process.

With it on, each of the snapshot's rows also has its columns digested, is held against its stored state
and writes a row-state record in the poll's transaction; the figure is what that costs in events/s.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench import ingest
from bench._report import Check, Result

TARGET_RATIO = 0.7


async def run(config: ingest.IngestConfig, *, bootstrap: str, log_dir: Path) -> Result:
    without = await ingest.run(replace(config, row_state=False), bootstrap=bootstrap, log_dir=log_dir)
    with_state = await ingest.run(replace(config, row_state=True), bootstrap=bootstrap, log_dir=log_dir)
    ratio = with_state.rate / without.rate
    return Result(
        name="row-state",
        rate=with_state.rate,
        unit="events/s",
        baseline=without.rate,
        baseline_label="the ingest benchmark with GATEWAY_ROW_STATE=false, run just before",
        checks=[Check("ratio to row state off", ratio, ">=", TARGET_RATIO, "ratio")],
        details={
            "ingest_ratio_to_producer_with_row_state": round(with_state.rate / (with_state.baseline or 1), 3),
            "ingest_ratio_to_producer_without_row_state": round(without.rate / (without.baseline or 1), 3),
            "gateway_cpu_us_per_event": {
                "row_state_on": with_state.details["gateway_cpu_us_per_event"],
                "row_state_off": without.details["gateway_cpu_us_per_event"],
            },
            "committed_events_read": with_state.details["committed_events_read"],
        },
        config={"records": config.records, "page_size": config.page_size},
        notes=["both runs: the ingest benchmark's snapshot of accounts, each gateway in its own process"],
    )
