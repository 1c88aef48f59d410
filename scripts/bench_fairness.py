"""Benchmark (not a test): how jobs at the same priority share render processes, and one job's throughput.

    python scripts/bench_fairness.py               # 2 nodes x 2 render processes, 1 s batches
    python scripts/bench_fairness.py --big 200 --small 4 --delay 5 --sleep 1

Runs on a private redis-server (httpov.local.embedded_redis) with the stub renderer (scripts/povray-stub.sh,
sleeping --sleep seconds per frame), so it measures scheduling, not povray. Three runs on the same nodes:
  alone   the small job (--small one-frame batches) by itself: its time from submit to done;
  single  the big job (--big one-frame batches) by itself: batches per second from submit to done;
  mixed   the big job, then --delay s later the small job at the same priority: the small job's time from
          its submit to done, against its time alone, and when the big job ended;
  share   (--share-jobs N) N jobs of --share-batches batches submitted together: each one's batches done when the
          first of them ends, against an equal share.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local import embedded_redis, start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from bench import TINY, stub_copy  # noqa: E402


def stub_scene(tmp: Path, name: str, frames: int) -> Path:
    """A scene of `frames` frames at 1x1, the size of the PNG the stub writes (nodes check each frame's size)."""
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / "scene.pov").write_text(TINY)
    (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth=1\nHeight=1\nInitial_Frame=1\n"
                                    f"Final_Frame={frames}\n")
    return folder


def wait_done(client: Client, job_ids: list[str], timeout: float = 1800) -> dict[str, float]:
    """When (time.monotonic) each job finished; every one must end 'done'."""
    ended: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < len(job_ids):
        for job_id in job_ids:
            if job_id not in ended and client.store.record(job_id).get("finished"):
                ended[job_id] = time.monotonic()
                state = client.store.state(job_id)
                if state != "done":
                    raise SystemExit(f"job {job_id} ended {state}: {client.store.record(job_id).get('error', '')}")
        if time.monotonic() > deadline:
            raise SystemExit("jobs did not finish in time")
        time.sleep(0.05)
    return ended


def share(client: Client, scene: Path, jobs: int) -> None:
    """`jobs` jobs submitted one after the other: batches each had done when the first one ended."""
    ids = [client.submit(scene, count=1, name=f"share{i}").spec.id for i in range(jobs)]
    while not any(client.store.record(job_id).get("finished") for job_id in ids):
        time.sleep(0.05)
    done = [len(client.store.batches(job_id)["done"]) for job_id in ids]
    mean = sum(done) / len(done)
    worst = max(abs(d - mean) / mean for d in done) if mean else 0.0
    print(f"share: {jobs} jobs, batches done when the first ended: {done}; furthest from an equal share "
          f"{100 * worst:.0f}%", flush=True)
    wait_done(client, ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="render processes per node")
    parser.add_argument("--big", type=int, default=200, help="batches of the big job")
    parser.add_argument("--small", type=int, default=4, help="batches of the small job")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds between the big and the small submit")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds per batch (the stub's sleep)")
    parser.add_argument("--share-jobs", type=int, default=0, help="jobs submitted together for the share run")
    parser.add_argument("--share-batches", type=int, default=100)
    parser.add_argument("--skip", nargs="*", default=[], choices=["alone", "single", "mixed"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="httpov-fair-") as tmp_name:
        tmp = Path(tmp_name)
        with embedded_redis(tmp) as url:
            stub = stub_copy(tmp, args.sleep)
            settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix="fair",
                                queue="fair", cache_dir=tmp / "cache", povray=str(stub))
            client = Client(settings, make_app(settings))
            big, small = stub_scene(tmp, "big", args.big), stub_scene(tmp, "small", args.small)
            nodes = [start_worker(settings.with_(cache_dir=tmp / f"cache-{i}"), args.processes, f"fair{i}",
                                  tmp / f"worker-{i}.log") for i in range(args.nodes)]
            try:
                warm = client.submit(small, count=1, name="warm")  # nodes up, scene cached
                wait_done(client, [warm.spec.id])
                alone_s = 0.0
                if "alone" not in args.skip:
                    t0 = time.monotonic()
                    alone = client.submit(small, count=1, name="alone").spec.id
                    alone_s = wait_done(client, [alone])[alone] - t0
                    print(f"alone: {args.small}-batch job in {alone_s:.2f} s", flush=True)
                if "single" not in args.skip:
                    t0 = time.monotonic()
                    single = client.submit(big, count=1, name="single").spec.id
                    single_s = wait_done(client, [single])[single] - t0
                    rate = args.big / single_s
                    print(f"single: {args.big}-batch job in {single_s:.2f} s, {rate:.2f} batches/s "
                          f"(ideal {args.nodes * args.processes / args.sleep:.2f})", flush=True)
                if "mixed" not in args.skip:
                    t0 = time.monotonic()
                    big_id = client.submit(big, count=1, name="big").spec.id
                    time.sleep(args.delay)
                    t1 = time.monotonic()
                    small_id = client.submit(small, count=1, name="small").spec.id
                    ended = wait_done(client, [big_id, small_id])
                    mixed_s = ended[small_id] - t1
                    ratio = f" ({mixed_s / alone_s:.1f}x alone)" if alone_s else ""
                    print(f"mixed: small job submitted {args.delay:g} s after the big one finished in "
                          f"{mixed_s:.2f} s{ratio}; the big job took {ended[big_id] - t0:.2f} s and ended "
                          f"{ended[big_id] - ended[small_id]:.2f} s after the small one", flush=True)
                if args.share_jobs:
                    share(client, stub_scene(tmp, "share", args.share_batches), args.share_jobs)
            finally:
                for node in nodes:
                    stop_worker(node)


if __name__ == "__main__":
    main()
