"""Benchmark: job events, recorded and delivered. On a Redis (--redis, a private key prefix, removed afterwards):

1. recording: --jobs jobs created, published, paused, resumed and cancelled through JobStore (each move's event is
   written by its own script): moves per second, and the events stream's size per event;
2. delivery: --events events POSTed by one Deliverer to a live receiver on 127.0.0.1 while a second receiver,
   listed first, never answers (its POSTs time out): events per second and the latency from record to arrival
   (median, 99th percentile, worst) at the live one.

    python scripts/bench_events.py [--redis redis://127.0.0.1:6379/0] [--jobs 500] [--events 2000]
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpov.plan import JobSpec  # noqa: E402
from httpov.states import JobState  # noqa: E402
from httpov.store import JobStore  # noqa: E402
from httpov.webhooks import Deliverer  # noqa: E402
from tests.receiver import Receiver  # noqa: E402


def _spec(job_id: str) -> JobSpec:
    return JobSpec(id=job_id, name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=1, first=1,
                   last=1, width=8, height=8, count=1, batches=["f000001-000001"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    prefix = "httpovbench-" + secrets.token_hex(4)
    store = JobStore(client, prefix)
    live, hung = Receiver(), Receiver(hang=True)
    deliverer = None
    try:
        began = time.perf_counter()
        for n in range(args.jobs):
            job = f"b{n}"
            store.create(_spec(job), user="bench")
            store.publish(job)
            for state in (JobState.PAUSED, JobState.RUNNING, JobState.CANCELLED):
                store.transition(job, state)
        took = time.perf_counter() - began
        events = client.xlen(store.keys.events())
        size = client.memory_usage(store.keys.events()) or 0
        print(f"recording: {args.jobs} jobs, {events} events in {took:.2f} s: {args.jobs * 5 / took:.0f} moves/s "
              f"(create, publish, pause, resume, cancel; all but publish an event), "
              f"{size / max(events, 1):.0f} bytes of stream per event")

        deliverer = Deliverer(client, prefix, [f"{hung.url}/dead", f"{live.url}/live"], "secret",
                              retry_seconds=5.0, timeout=1.0).start()
        sent: dict[str, float] = {}
        began = time.perf_counter()
        for n in range(args.events):
            entry = client.xadd(store.keys.events(), {"kind": "done", "job": f"e{n}", "owner": "bench", "detail": "",
                                                      "notify": "[]"})
            sent[entry] = time.monotonic()
        deadline = time.monotonic() + 120
        while len(live.events("/live")) < args.events and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.perf_counter() - began
        latencies = sorted(at - sent[i] for i, at in dict(live.when).items() if i in sent)
        got = len(latencies)
        print(f"delivery: {got} of {args.events} events at the live receiver in {took:.2f} s: {got / took:.0f} "
              f"events/s beside a receiver that never answers; latency median "
              f"{statistics.median(latencies) * 1000:.0f} ms, p99 {latencies[int(got * 0.99) - 1] * 1000:.0f} ms, "
              f"worst {latencies[-1] * 1000:.0f} ms")
    finally:
        if deliverer is not None:
            deliverer.stop()
        live.close()
        hung.close()
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
