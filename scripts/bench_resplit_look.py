"""Benchmark: what the re-split's look costs Redis when many render processes idle at the tail of jobs (#30 item 4,
#28 item 2).

A render node with an idle process looks, each sweep, for a running slice to split (httpov.worker.resplit): the
look reads every live job's pending length, queue, running batches and cuts (JobStore.resplit_candidates, one
pipeline of 1 + 4 x jobs commands). At the tail of jobs every batch is sent and running and many processes idle.
Now one node of those consuming the same pools wins a claim each sweep period and looks; before, every node with
an idle process looked every second.

A private redis-server holds --jobs live jobs, each with --running batches running and nothing pending (the tail):
first of whole frames (the look finds nothing to cut), then stills of slices whose owner is at max_processes 1 (the
look finds slices to cut, reads the jobs' windows and asks resplit.lua of each, which answers 'no room': the
costliest look that cuts nothing).
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
from httpov.plan import Batch, JobSpec  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.store import JobStore  # noqa: E402
from httpov.sweep import claims, resplit_claim  # noqa: E402
from httpov.user_limits import UserLimits  # noqa: E402
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


def sliced_job(store: JobStore, job_id: str, slices: int) -> JobSpec:
    """A still of `slices` slices of 128 rows (each could be cut: 4 block rows), created and published."""
    rows = [(1 + 128 * n, 128 * (n + 1)) for n in range(slices)]
    spec = JobSpec(id=job_id, name="bench", scene_key="scenes/bench.zip", root="", pov="scene.pov", options={},
                   initial=1, final=1, first=1, last=1, width=32, height=128 * slices, count=1, slices=rows,
                   created=time.time(), batches=[Batch(1, 1, r).id for r in rows])
    store.create(spec, user="bench")
    store.publish(job_id)
    return spec


def tail(store: JobStore, jobs: int, running: int, sliced: bool) -> None:
    """`jobs` live jobs at their tail: every batch sent and running. Sliced: stills of `running` slices whose owner
    is at their max_processes (each look finds slices to cut, and every job's window full: 'no room')."""
    store.r.flushdb()
    store.load_scripts()
    store.heartbeat("sweeper@bench", 8, [])
    for n in range(jobs):
        spec = sliced_job(store, f"job{n:04d}", running) if sliced else make_job(store, f"job{n:04d}", running)
        _, sent = store.top_up(spec.id, running)
        for batch in sent:
            assert store.start_batch(spec.id, batch, f"t-{batch}", "busy@bench", 3600.0) == "ok"
    if sliced:  # set once they run (a batch past the owner's cap would not start)
        store.set_user_limits("bench", UserLimits(max_processes=1).to_json())
    assert len(store.resplit_candidates()) == jobs  # every one at its tail: all sent, all running


def _claims(store: JobStore, n: int) -> None:
    """`n` attempts at the held resplit claim in one pipeline: what one more costs inside a heartbeat."""
    pipe = store.r.pipeline(transaction=False)
    for _ in range(n):
        pipe.set(store.keys.claim(resplit_claim([])), "1", nx=True, px=800)
    assert not any(pipe.execute())


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
        store = JobStore(redis.Redis.from_url(url, decode_responses=True), PREFIX)
        app = make_app(settings)
        base = claims(settings.lease_seconds, settings.sweep_seconds)

        def look() -> None:  # before: every idle node, every second
            assert resplit_one(app, store, QUEUE, settings.lease_seconds, "idle@bench", []) is None

        def attempt() -> None:  # now: a heartbeat that tries the claim, which all but one node a period lose
            store.heartbeat("idle@bench", 8, [], claims={**base, resplit_claim([]): 0.8})

        def heartbeat() -> None:  # what a node sends each sweep anyway
            store.heartbeat("idle@bench", 8, [], claims=base)
        print(f"{args.jobs} live jobs at their tail, {args.running} running batches each; {args.repeat} rounds of "
              f"{args.looks} calls of each kind, taking turns")
        for sliced in (False, True):
            tail(store, args.jobs, args.running, sliced)
            store.r.set(store.keys.claim(resplit_claim([])), "1")  # held for the whole run: every attempt loses
            looks, attempts, beats = [], [], []
            for _ in range(args.repeat):
                looks.append(cost(store.r, args.looks, look))
                attempts.append(cost(store.r, args.looks, attempt))
                beats.append(cost(store.r, args.looks, heartbeat))
                time.sleep(0.1)
            look_us, look_cmds = (statistics.median(m[i] for m in looks) for i in (0, 1))
            extra = [a[0] - b[0] for a, b in zip(attempts, beats)]  # the claim's share of a heartbeat, per round
            claim_cmds = statistics.median(a[1] - b[1] for a, b in zip(attempts, beats))
            # that share is within the heartbeat's noise: what the table counts is one lost SET NX PX inside a round
            # trip, measured as many of them in one pipeline
            claim_us = cost(store.r, 1, lambda: _claims(store, args.looks))[0] / args.looks
            said = ("stills of slices, each owner at max_processes 1 (the look reads the windows and asks "
                    "resplit.lua of each job: 'no room')" if sliced else "whole-frame batches (nothing to cut)")
            print(f"\n{said}:")
            print(f"  one look: {look_us:.1f} us of Redis CPU ({min(m[0] for m in looks):.1f}-"
                  f"{max(m[0] for m in looks):.1f}), {look_cmds:.0f} commands")
            print(f"  a heartbeat: {statistics.median(m[0] for m in beats):.1f} us; with the resplit claim tried in "
                  f"it (and lost): {statistics.median(m[0] for m in attempts):.1f} us, {claim_cmds:.0f} command more "
                  f"(the difference per round: {', '.join(f'{e:.1f}' for e in extra)} us, within the noise); one "
                  f"lost claim inside a round trip: {claim_us:.2f} us")
            print("\n| idle render processes | nodes | before: every idle node looks each second | now: one look a "
                  "second, the others' claims in their heartbeats | now / before |")
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
