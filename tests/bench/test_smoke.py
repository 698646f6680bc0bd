"""Every benchmark of `make bench` at a tiny size, so that none rots while it runs outside `make test`.

They say nothing about speed: they check that each one starts its processes, measures, and reports a
result of the expected shape with a positive rate. The eight run at once, to stay within seconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench import delivery, fencing, idle, ingest, latency, profile, row_state, window
from bench._report import Result, table

KEYS = {"name", "rate", "unit", "baseline", "ratio", "checks", "pass", "details", "config", "notes"}
_INGEST = ingest.IngestConfig(records=300, page_size=100, state_partitions=1, max_seconds=30)
_DELIVERY = delivery.DeliveryConfig(events=100, state_partitions=1, max_seconds=30)


def _document(result: Result | BaseException, name: str, *, baseline: bool) -> dict[str, Any]:
    if isinstance(result, BaseException):
        result.add_note(f"in the {name} benchmark")
        raise result
    document = result.as_json()
    assert set(document) >= KEYS
    assert document["name"] == name
    assert document["rate"] > 0
    assert (document["baseline"] is not None) is baseline
    if baseline:
        assert document["baseline"] > 0
        assert document["ratio"] > 0
    assert f"| {name} " in table([result])
    return document


async def test_every_benchmark_runs_at_a_tiny_size(kafka_bootstrap: str, tmp_path: Path) -> None:
    runs = {
        "ingest": ingest.run(_INGEST, bootstrap=kafka_bootstrap, log_dir=tmp_path),
        "window": window.run(
            window.WindowConfig(records=300, page_size=100, state_partitions=1, max_seconds=30),
            bootstrap=kafka_bootstrap,
            log_dir=tmp_path,
        ),
        "row-state": row_state.run(_INGEST, bootstrap=kafka_bootstrap, log_dir=tmp_path),
        "delivery": delivery.run(_DELIVERY, bootstrap=kafka_bootstrap, log_dir=tmp_path),
        "latency": latency.run(
            latency.LatencyConfig(rate=50, warmup_seconds=1, measure_seconds=2, state_partitions=1),
            bootstrap=kafka_bootstrap,
            log_dir=tmp_path,
        ),
        "idle": idle.run(
            idle.IdleConfig(
                pollers=(7, 14, 21), main=14, windows=(1.5, 1.5, 1.5), refresh_seconds=1.0, state_partitions=1
            ),
            bootstrap=kafka_bootstrap,
            log_dir=tmp_path,
        ),
        "fencing": fencing.run(
            fencing.FencingConfig(partitions=2, rounds=3), bootstrap=kafka_bootstrap, log_dir=tmp_path
        ),
        "profile": profile.run(
            profile.ProfileConfig(ingest=_INGEST, delivery=_DELIVERY, kind="cprofile"),
            bootstrap=kafka_bootstrap,
            log_dir=tmp_path,
        ),
    }
    results = dict(zip(runs, await asyncio.gather(*runs.values(), return_exceptions=True), strict=True))

    ingested = _document(results["ingest"], "ingest", baseline=True)
    assert ingested["details"]["committed_events_read"] == 300
    assert [check["label"] for check in ingested["checks"]] == ["events/s", "ratio to baseline"]

    windowed = _document(results["window"], "window", baseline=True)
    assert windowed["details"]["committed_events_read"] == 300
    assert windowed["details"]["checkpoint_records"] == 1  # 300 pairs fit in one record
    assert windowed["details"]["skipping_poll_seconds"] > 0

    with_state = _document(results["row-state"], "row-state", baseline=True)
    assert with_state["details"]["committed_events_read"] == 300
    assert [check["label"] for check in with_state["checks"]] == ["ratio to row state off"]

    delivered = _document(results["delivery"], "delivery", baseline=True)
    assert delivered["details"]["requests_received"] >= 100

    late = _document(results["latency"], "latency", baseline=False)
    assert late["details"]["kafka_to_webhook_ms"]["p99"] > 0

    idled = _document(results["idle"], "idle", baseline=False)
    assert [step["pollers"] for step in idled["details"]["steps"]] == [7, 14, 21]
    assert len(idled["checks"]) == 4

    fenced = _document(results["fencing"], "fencing", baseline=True)
    assert fenced["details"]["producer_start_seconds"] > 0

    profiled = _document(results["profile"], "profile", baseline=False)
    assert profiled["details"]["ingest"]["top_own"]
    assert profiled["details"]["delivery"]["top_own"]
