"""Benchmark: what leases, their renewals and the sweeps cost Redis at N render processes (commands/s, Redis CPU).

A private redis-server holds one job with one running batch per simulated render process, and that batch's
message in kombu's unacked table (a worker holds it while it renders). For --seconds, the script then does what
the cluster does: every process renews its lease every lease / 4 (JobStore.refresh: one EVALSHA) and reads its job's
state every povray tick (half a second: one HGET, so that a cancel stops povray at once), and every render node
(--per-node processes each) says it is alive and sweeps every Settings.sweep_seconds (Client.reap's path:
heartbeat, then reap()). Redis's INFO commandstats and CPU time are read before and after. If this machine cannot
drive the full rate, the per-renewal and per-sweep costs measured are scaled to it (both are shown).

    python scripts/bench_redis_leases.py [--processes 1000] [--per-node 8] [--lease 8] [--seconds 20]
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpov.broker import QueueLayout, key_prefix  # noqa: E402
from httpov.local_farm import embedded_redis  # noqa: E402
from httpov.plan import Batch, JobSpec  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.store import JobStore  # noqa: E402
from httpov.sweep import reap  # noqa: E402

PREFIX = "bench"
LAYOUT = QueueLayout(key_prefix(PREFIX))  # kombu's keys as httpov.celery configures them
TICK = 0.5  # povray._wait asks keep_going this often; RenderNode's keep_going reads the job's state each time


def setup(store: JobStore, processes: int, lease: float) -> tuple[str, list[tuple[str, str]]]:
    """One job with `processes` running batches, each leased and its message in kombu's unacked table."""
    batches = [Batch(n, n).id for n in range(1, processes + 1)]
    spec = JobSpec(id="benchjob", name="bench", scene_key="scenes/bench.zip", root="", pov="scene.pov", options={},
                   initial=1, final=processes, first=1, last=processes, width=64, height=48, count=1,
                   created=time.time(), batches=batches)
    store.create(spec)
    tokens, table = [], {}
    for n, batch in enumerate(batches):
        task = f"task-{n:06d}"
        token = f"{task}/0000"
        assert store.start_batch(spec.id, batch, token, f"node{n // 8}@bench", lease) == "ok"
        body = base64.b64encode(json.dumps([[], {"job_id": spec.id, "batch": batch}, {}]).encode()).decode()
        # a render_batch message as kombu keeps it in its unacked table (httpov.broker.render_message reads it)
        message = {"body": body, "headers": {"task": "httpov.render_batch", "id": task},
                   "properties": {"body_encoding": "base64", "delivery_tag": task}}
        table[task] = json.dumps([message, "", PREFIX])
        tokens.append((batch, token))
    store.r.hset(LAYOUT.unacked, mapping=table)
    store.r.zadd(LAYOUT.unacked_index, {tag: time.time() - 3600 for tag in table})  # rendering for 1 h
    return spec.id, tokens


def paced(calls: list, every: float, stop: threading.Event, counter: list[int]) -> None:
    """Call each of `calls` once every `every` seconds, spread evenly over the period."""
    gap = every / max(1, len(calls))
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        calls[n % len(calls)]()
        counter[0] += 1
        n += 1
        delay = start + n * gap - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def commandstats(r: redis.Redis) -> tuple[dict[str, int], float]:
    info = r.info("commandstats")
    stats = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
    cpu = r.info("cpu")
    return stats, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def run(url: str, processes: int, per_node: int, lease: float, seconds: float, threads: int) -> None:
    settings = Settings(lease_seconds=lease)
    store = JobStore(redis.Redis.from_url(url, decode_responses=True), PREFIX)
    job_id, tokens = setup(store, processes, lease)
    nodes = max(1, processes // per_node)
    renew, sweep = lease / 4, settings.sweep_seconds

    def refresher(batch: str, token: str):
        return lambda: store.refresh(job_id, batch, token, lease)

    def sweeper(node: str):
        def once() -> None:
            store.heartbeat(node)
            reap(store, LAYOUT, lambda *_: None, lease, settings.max_attempts, every=sweep)
        return once

    refreshes = [refresher(b, t) for b, t in tokens]
    checks = [lambda: store.state(job_id)] * processes
    sweeps = [sweeper(f"node{n}@bench") for n in range(nodes)]
    counts = [[0] for _ in range(2 * threads + 1)]
    stop = threading.Event()
    workers = [threading.Thread(target=paced, args=(refreshes[i::threads], renew, stop, counts[i]))
               for i in range(threads)]
    workers += [threading.Thread(target=paced, args=(checks[i::threads], TICK, stop, counts[threads + i]))
                for i in range(threads)]
    workers.append(threading.Thread(target=paced, args=(sweeps, sweep, stop, counts[-1])))
    before, cpu0 = commandstats(store.r)
    began = time.monotonic()
    for t in workers:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - began
    after, cpu1 = commandstats(store.r)
    lost = store.lost_batches(job_id)
    done_refreshes, done_checks = sum(c[0] for c in counts[:threads]), sum(c[0] for c in counts[threads:-1])
    done_sweeps = counts[-1][0]
    calls = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    calls.pop("info", None)

    want_refresh, want_check, want_sweep = processes / renew, processes / TICK, nodes / sweep
    got_refresh, got_check, got_sweep = done_refreshes / elapsed, done_checks / elapsed, done_sweeps / elapsed
    total = sum(calls.values()) / elapsed
    wanted, driven = want_refresh + want_check + want_sweep, got_refresh + got_check + got_sweep
    scale = wanted / driven if driven else 0.0
    print(f"{processes} render processes on {nodes} nodes, lease {lease:g} s: renewal every {renew:g} s, "
          f"sweep every {sweep:g} s, {elapsed:.1f} s measured")
    print(f"  renewals/s  wanted {want_refresh:8.1f}  driven {got_refresh:8.1f}")
    print(f"  state reads/s wanted {want_check:6.1f}  driven {got_check:8.1f}")
    print(f"  sweeps/s    wanted {want_sweep:8.1f}  driven {got_sweep:8.1f}")
    print("  Redis commands/s by command (commands run inside a Lua script are counted too):")
    for name, n in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<16}{n / elapsed:10.1f}")
    print(f"  Redis commands/s total {total:.0f}; Redis CPU {100 * (cpu1 - cpu0) / elapsed:.1f}% of one core")
    if driven and abs(scale - 1) > 0.05:
        print(f"  scaled to the wanted rate ({scale:.2f}x): about {total * scale:.0f} commands/s, "
              f"{100 * (cpu1 - cpu0) / elapsed * scale:.1f}% of one core")
    print(f"  batches the sweeps took for lost while every lease was renewed: {len(lost)} (must be 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--per-node", type=int, default=8, help="render processes per render node")
    parser.add_argument("--lease", type=float, default=Settings().lease_seconds)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4, help="threads driving the renewals (and the state reads)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="httpov-bench-leases-") as tmp, embedded_redis(Path(tmp)) as url:
        run(url, args.processes, args.per_node, args.lease, args.seconds, args.threads)


if __name__ == "__main__":
    main()
