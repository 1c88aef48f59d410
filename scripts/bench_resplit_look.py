"""Benchmark: what the re-split's look costs Redis when many render processes idle at the tail of jobs (#30 item 4,
#28 item 2).

A render node with an idle process looks, each sweep, for a running slice to split (httpov.worker.resplit): the
look reads every live job's pending length, queue, running batches and cuts (JobStore.resplit_candidates, one
pipeline of 1 + 4 x jobs commands). At the tail of jobs every batch is sent and running and many processes idle.
Now one node of those consuming the same pools wins a claim each sweep period and looks; before, every node with
an idle process looked every second.

A private redis-server holds --jobs live jobs, each with --running batches running and nothing pending (the tail).
--looks looks (the real resplit_one), heartbeats with the claim tried in them and lost (as all but one node a period
lose it), and heartbeats without it are made, taking turns, and the redis-server's CPU and commands counted for
each: the cost of one look, and the claim's share of a heartbeat. A farm of N idle render processes (--per-node a
node) then costs Redis, each second: before, nodes x one look; now, one look plus nodes x the claim's share (per set
of pools). Printed for 100, 1,000 and 10,000 processes, as the share of one Redis core.

    python scripts/bench_resplit_look.py [--jobs 20 --running 8 --looks 2000 --repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_redis_scale import make_job, redis_counts  # noqa: E402

from httpov.celery import make_app  # noqa: E402
from httpov.local_farm import embedded_redis  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.store import JobStore  # noqa: E402
from httpov.sweep import claims, resplit_claim  # noqa: E402
from httpov.worker.resplit import resplit_one  # noqa: E402

PREFIX = QUEUE = "benchlook"


def cost(r: redis.Redis, calls: int, call) -> tuple[float, float]:
    """(Redis CPU microseconds, commands) per call of `call`, over `calls` calls."""
    before, cpu0 = redis_counts(r)
    for _ in range(calls):
        call()
    after, cpu1 = redis_counts(r)
    commands = after - before
    commands.pop("info", None)
    return 1e6 * (cpu1 - cpu0) / calls, sum(commands.values()) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="live jobs at their tail")
    parser.add_argument("--running", type=int, default=8, help="running batches of each")
    parser.add_argument("--looks", type=int, default=2000, help="looks (and claim attempts) measured per round")
    parser.add_argument("--per-node", type=int, default=8, help="render processes per render node")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, embedded_redis(Path(tmp)) as url:
        settings = Settings(broker_url=url, state_url=url, prefix=PREFIX, queue=QUEUE)
        r = redis.Redis.from_url(url, decode_responses=True)
        store = JobStore(r, PREFIX)
        store.load_scripts()
        app = make_app(settings)
        store.heartbeat("sweeper@bench", args.per_node, [])
        for n in range(args.jobs):
            spec = make_job(store, f"job{n:04d}", args.running)
            _, sent = store.top_up(spec.id, args.running)
            for batch in sent:
                assert store.start_batch(spec.id, batch, f"t-{batch}", "busy@bench", 3600.0) == "ok"
        assert len(store.resplit_candidates()) == args.jobs  # every one at its tail: all sent, all running

        def look() -> None:  # before: every idle node, every second
            resplit_one(app, store, QUEUE, settings.lease_seconds, "idle@bench", [])

        def attempt() -> None:  # now: a heartbeat that tries the claim, which all but one node a period lose
            store.heartbeat("idle@bench", 8, [], claims={**base, resplit_claim([]): 0.8})

        def heartbeat() -> None:  # what a node sends each sweep anyway
            store.heartbeat("idle@bench", 8, [], claims=base)
        base = claims(settings.lease_seconds, settings.sweep_seconds)
        r.set(store.keys.claim(resplit_claim([])), "1")  # held for the whole run: every attempt loses
        looks, attempts, beats = [], [], []
        for _ in range(args.repeat):  # taking turns
            looks.append(cost(r, args.looks, look))
            attempts.append(cost(r, args.looks, attempt))
            beats.append(cost(r, args.looks, heartbeat))
            time.sleep(0.1)
        look_us, look_cmds = (statistics.median(m[i] for m in looks) for i in (0, 1))
        extra = [a[0] - b[0] for a, b in zip(attempts, beats)]  # the claim's share of a heartbeat, per round
        claim_us, claim_cmds = statistics.median(extra), statistics.median(a[1] - b[1] for a, b in zip(attempts, beats))
        print(f"{args.jobs} live jobs at their tail, {args.running} running batches each; {args.repeat} rounds of "
              f"{args.looks}")
        print(f"  one look: {look_us:.1f} us of Redis CPU ({min(m[0] for m in looks):.1f}-"
              f"{max(m[0] for m in looks):.1f}), {look_cmds:.0f} commands in one round trip")
        print(f"  a heartbeat: {statistics.median(m[0] for m in beats):.1f} us; with the resplit claim tried in it "
              f"(and lost): {statistics.median(m[0] for m in attempts):.1f} us; the claim's share: {claim_us:.1f} us "
              f"({min(extra):.1f} to {max(extra):.1f}), {claim_cmds:.0f} command")
        claim_us = max(claim_us, 0.0)
        print("\n| idle render processes | nodes | before: every idle node looks each second | now: one look a second, "
              "the others' claims in their heartbeats | now / before |")
        print("| --- | --- | --- | --- | --- |")
        for processes in (100, 1000, 10000):
            nodes = max(1, processes // args.per_node)
            before = nodes * look_us
            now = look_us + (nodes - 1) * claim_us
            print(f"| {processes:,} | {nodes:,} | {before / 1e4:.1f}% of a Redis core ({nodes * look_cmds:,.0f} "
                  f"commands/s) | {now / 1e4:.2f}% ({look_cmds + (nodes - 1) * claim_cmds:,.0f} commands/s) | "
                  f"{now / before:.3f} |")

if __name__ == "__main__":
    main()
