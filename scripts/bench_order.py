"""Benchmark: the preview order (HTTPOV_BATCH_ORDER=preview) against first-to-last on the same job; prints ratios.

    python scripts/bench_order.py [--frames 104 --width 160 --height 120 --count 4 --pairs 5]

One real `celery -A httpov worker` with the node's defaults (a bare worker: HTTPOV_RENDER_PROCESSES) renders Debian's
`diffuse` sample animation (povray-examples) stretched to --frames frames, submitted again and again, the two orders
taking turns (preview, frames, frames, preview, ...), all with --count frames per batch (--count 0: the adaptive
count a submit without one gets). In preview order a job of 100 frames or more also renders one frame of each tenth
on its own (plan.preview_frames): its cost is part of what is measured. An untimed submit first
puts the scene in the node's cache. For each job: wall time from submit to its record saying done, and,
from polling its done batches, which tenths of the timeline hold a rendered frame once 10% of its frames are done,
and when every tenth first held one (as a share of the job's time). Runs on a private redis-server.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, start_worker, stop_worker  # noqa: E402
from httpov.options import SubmitOptions  # noqa: E402
from httpov.plan import Batch  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.worker import waits  # noqa: E402

DIFFUSE = Path("/usr/share/doc/povray/examples/animations/diffuse")


def timed_job(client: Client, folder: Path, frames: int, count: int, poll: float = 0.05) -> dict:
    """Submit, watch the done batches until the job is done; answers its seconds and what it showed when."""
    t0 = time.time()
    sub = client.submit(folder, SubmitOptions(frames=frames, count=count or None))
    spec, seen = sub.spec, {}
    while True:
        record = client.store.record(spec.id)
        now = time.time() - t0
        for batch_id in client.store.batches(spec.id)["done"]:
            seen.setdefault(batch_id, now)
        if record.get("finished"):
            break
        time.sleep(poll)
    if record["state"] != "done":
        raise SystemExit(f"job {spec.id} ended {record['state']}: {record.get('error', '')}")
    total = float(record["finished"]) - t0
    done: list[int] = []
    tenths_at_10 = None
    all_tenths_at = None
    for batch_id, _ in sorted(seen.items(), key=lambda item: item[1]):
        done += list(Batch.from_id(batch_id).frames)
        tenths = {(f - spec.first) * 10 // spec.frame_count for f in done}
        if tenths_at_10 is None and len(done) >= spec.frame_count / 10:
            tenths_at_10 = len(tenths)
        if all_tenths_at is None and len(tenths) == 10:
            all_tenths_at = seen[batch_id] / total
    if os.environ.get("BENCH_ORDER_TRACE"):
        print(" ".join(f"{Batch.from_id(b).label}@{t:.2f}" for b, t in sorted(seen.items(), key=lambda i: i[1])[:12]))
    return {"seconds": total, "tenths_at_10": tenths_at_10 or 0, "all_tenths_at": all_tenths_at or 1.0,
            "count": spec.count, "batches": len(spec.batches)}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=104, help="frames of the job (diffuse has 26)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--count", type=int, default=4,
                        help="frames per batch; 0: the node's adaptive count (the default a user gets)")
    parser.add_argument("--pairs", type=int, default=5, help="timed jobs of each order, taking turns")
    args = parser.parse_args()
    if not DIFFUSE.is_dir():
        raise SystemExit(f"{DIFFUSE} is missing: apt-get install povray-examples")
    say = lambda text: print(text, flush=True)  # noqa: E731
    say(f"load average before: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="httpov-bench-order-") as name:
        tmp = Path(name)
        folder = tmp / "diffuse"
        folder.mkdir()
        (folder / "diffuse.pov").write_text((DIFFUSE / "diffuse.pov").read_text())
        (folder / "pov.ini").write_text((DIFFUSE / "diffuse.ini").read_text()
                                        + f"\nWidth={args.width}\nHeight={args.height}\n")
        with embedded_redis(tmp) as url:
            settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix="order",
                                queue="order", cache_dir=tmp / "cache", lease_seconds=20.0)
            waits.library_for(settings, wait=True)  # the node's quick waits checked, as on a node run before
            worker = start_worker(settings, None, "bench-order", tmp / "worker.log")
            try:
                app = make_app(settings)
                clients = {order: Client(settings.with_(batch_order=order), app) for order in ("preview", "frames")}
                first = timed_job(clients["frames"], folder, args.frames, args.count)  # untimed: caches the scene
                say(f"untimed submit: {first['seconds']:.2f}s ({first['batches']} batches of {first['count']})")
                runs: dict[str, list[dict]] = {"preview": [], "frames": []}
                for n in range(args.pairs):
                    for order in (("preview", "frames") if n % 2 == 0 else ("frames", "preview")):
                        run = timed_job(clients[order], folder, args.frames, args.count)
                        runs[order].append(run)
                        say(f"  {order}: {run['seconds']:.2f}s, {run['batches']} batches of {run['count']}, tenths "
                            f"shown at 10% of frames {run['tenths_at_10']}/10, every tenth at "
                            f"{run['all_tenths_at']:.0%} of the job's time")
            finally:
                stop_worker(worker)
    ratios = [p["seconds"] / f["seconds"] for p, f in zip(runs["preview"], runs["frames"])]
    per = f"{args.count} per batch" if args.count else "adaptive frames per batch"
    say(f"diffuse {args.frames} frames at {args.width}x{args.height}, {per}, {args.pairs} pairs")
    say(f"wall time preview/frames, per pair: {spread(ratios)}")
    for order in ("preview", "frames"):
        say(f"{order}: seconds {spread([r['seconds'] for r in runs[order]])}; tenths with a frame at 10% of frames "
            f"{spread([r['tenths_at_10'] for r in runs[order]])}; every tenth shown at "
            f"{spread([r['all_tenths_at'] for r in runs[order]])} of the job's time")


if __name__ == "__main__":
    main()
