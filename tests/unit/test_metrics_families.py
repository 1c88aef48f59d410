"""The metrics' pure parts: which histogram bucket a batch's time counts in, failure reasons as bounded categories,
and the exposition built from what Redis holds (buckets added up, nodes up and lost, pools from queue names)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from httpov.metrics import families
from httpov.store.records import FarmCounts, bucket_field, failure_field


def test_a_batch_time_counts_in_the_smallest_bucket_that_holds_it():
    assert [bucket_field(s) for s in (0.0, 1.0, 1.001, 14400.0, 14400.5, float("inf"))] == \
        ["le:1", "le:1", "le:5", "le:14400", "le:+Inf", "le:+Inf"]


def test_a_failure_reason_is_a_known_category_never_free_text():
    assert failure_field("hung") == "failed:hung"
    assert failure_field("povray failed: Parse Error\x1b[2J") == "failed:other"


def test_the_exposition_adds_the_buckets_up_and_splits_nodes_and_pools():
    counts = FarmCounts(jobs=[("done", "", 10), ("running", "q.pool.gpu", 5), ("queued", "", 0)],
                        batches=[("q.pool.gpu", 3, 2, 1), ("", 1, 0, 0), ("q.pool.gpu", 1, 1, 1)],
                        counters={"le:1": "2", "le:60": "1", "le:+Inf": "1", "seconds": "7000.5", "frames": "9",
                                  "failed:render": "4"},
                        nodes={"a": 100.0, "b": 95.0, "c": 10.0})

    class Farm:
        def collect(self):
            return families(counts, live_within=10.0, now=100.0)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Farm())
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert got[("httpov_batch_seconds_bucket", (("le", "1.0"),))] == 2
    assert got[("httpov_batch_seconds_bucket", (("le", "15.0"),))] == 2
    assert got[("httpov_batch_seconds_bucket", (("le", "60.0"),))] == 3
    assert got[("httpov_batch_seconds_bucket", (("le", "+Inf"),))] == got[("httpov_batch_seconds_count", ())] == 4
    assert got[("httpov_batch_seconds_sum", ())] == 7000.5
    assert got[("httpov_frames_rendered_total", ())] == 9
    assert got[("httpov_batch_failures_total", (("reason", "render"),))] == 4
    assert got[("httpov_batch_failures_total", (("reason", "other"),))] == 0
    assert got[("httpov_batches", (("pool", "gpu"), ("state", "pending")))] == 4
    assert got[("httpov_batches", (("pool", "gpu"), ("state", "running")))] == 2
    assert got[("httpov_batches", (("pool", ""), ("state", "pending")))] == 1
    assert got[("httpov_nodes", (("state", "up"),))] == 2 and got[("httpov_nodes", (("state", "lost"),))] == 1
    assert got[("httpov_jobs", (("state", "paused"),))] == 0 and got[("httpov_storage_bytes", ())] == 15
