"""The farm's Prometheus metrics, read from Redis at each scrape: `/metrics` on `httpov web`, `httpov metrics`.

Nothing is counted in this process (the web interface renders nothing): gauges are read from the job and node keys,
counters from the farm's `metrics` hash, which render nodes update in the same atomic step that records a batch
done (scripts/finish_batch.lua) or failed (JobStore.fail_batch). Labels are bounded: job states, batch states,
failure reasons (records.FAILURE_REASONS), and the render pools of the active jobs.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from httpov.errors import HttpovError
from httpov.states import JobState
from httpov.store.records import BATCH_SECONDS_BUCKETS, FAILURE_REASONS, FarmCounts, bucket_field

if TYPE_CHECKING:
    from httpov.store.jobs import JobStore

#: The exposition's content type (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def families(counts: FarmCounts, live_within: float, now: float) -> Iterator[Any]:
    """The metric families of one scrape, from what JobStore.farm_counts read (`live_within`: seconds since its
    last heartbeat for which a node counts as up; an older one, not yet forgotten, as lost)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    jobs = GaugeMetricFamily("httpov_jobs", "Jobs by state (every job not deleted).", labels=["state"])
    by_state = Counter(state for state, _, _ in counts["jobs"])
    for job_state in JobState:
        jobs.add_metric([job_state.value], by_state.get(job_state.value, 0))
    yield jobs

    batches = GaugeMetricFamily("httpov_batches", "Batches of the active jobs: pending (waiting in Redis), queued "
                                "(sent to Celery, not started), running (leased by a render node), by render pool "
                                "('' the default queue).", labels=["state", "pool"])
    per_pool: dict[str, list[int]] = {"": [0, 0, 0]}  # the default queue always: a farm at rest shows zeros
    for queue, pending, queued, running in counts["batches"]:
        sums = per_pool.setdefault(queue.rpartition(".pool.")[2] if queue else "", [0, 0, 0])
        for i, n in enumerate((pending, queued, running)):
            sums[i] += n
    for pool, sums in sorted(per_pool.items()):
        for state, n in zip(("pending", "queued", "running"), sums):
            batches.add_metric([state, pool], n)
    yield batches

    raw = counts["counters"]
    yield CounterMetricFamily("httpov_frames_rendered", "Frames rendered (each once all its slices are stitched).",
                              value=int(raw.get("frames", 0)))
    cumulative, buckets = 0, []
    for bound in (*BATCH_SECONDS_BUCKETS, float("inf")):  # the hash counts each bucket alone: added up here
        cumulative += int(raw.get(bucket_field(bound), 0))
        buckets.append((floatToGoString(bound), cumulative))
    yield HistogramMetricFamily("httpov_batch_seconds", "povray's time on each batch recorded done.",
                                buckets=buckets, sum_value=float(raw.get("seconds", 0.0)))
    failures = CounterMetricFamily("httpov_batch_failures", "Failed batch attempts, by reason (retried or final).",
                                   labels=["reason"])
    for reason in (*FAILURE_REASONS, "other"):
        failures.add_metric([reason], int(raw.get(f"failed:{reason}", 0)))
    yield failures

    nodes = GaugeMetricFamily("httpov_nodes", "Render nodes: up (seen within HTTPOV_LIVE_NODE_SECONDS), lost (seen "
                              "before, not forgotten yet).", labels=["state"])
    up = sum(1 for seen in counts["nodes"].values() if seen >= now - live_within)
    nodes.add_metric(["up"], up)
    nodes.add_metric(["lost"], len(counts["nodes"]) - up)
    yield nodes

    yield GaugeMetricFamily("httpov_storage_bytes", "Bytes of the batch results the farm's jobs keep in storage "
                            "(counted as each batch is recorded done; scene zips and downloads not included).",
                            value=sum(stored for _, _, stored in counts["jobs"]))


class FarmCollector:
    """A prometheus_client collector reading the farm from Redis at each scrape."""

    def __init__(self, store: JobStore, live_within: float) -> None:
        self.store, self.live_within = store, live_within

    def collect(self) -> Iterator[Any]:
        return families(self.store.farm_counts(), self.live_within, time.time())


def exposition(store: JobStore, live_within: float) -> bytes:
    """The farm's metrics in Prometheus's text format."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        raise HttpovError("metrics need the prometheus_client package",
                          hint="pip install 'httpov[web]' (or pip install prometheus_client)") from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(store, live_within))
    return generate_latest(registry)
