"""Benchmark: a long frame whose render node is killed at 75% of its render, finished from its checkpoint elsewhere.

One still frame of Debian's chess2.pov (+A0.3), sized to take one to two minutes, is rendered once uninterrupted on
one render node: its povray time T and its pixels are the reference. Then, alternating the modes: a victim node
renders it and is SIGKILLed (its whole process group) when povray says it rendered 75% of the frame; an idle rescuer
node, started beforehand, finishes it. `resume` runs with httpov's default settings (the batch continues from its last
checkpoint); `restart` with HTTPOV_CHECKPOINT_SECONDS=0 (no checkpoint: the batch renders again from the start, as
before checkpoints). Printed for each run: the povray share at the kill, seconds from the kill to the job done, that
over T, and whether the frame equals the reference pixel for pixel. Uses the Redis on HTTPOV_BROKER_URL (default
127.0.0.1:6379) under a private key prefix and queue; everything it made is deleted.

    python scripts/bench_resume.py [--size 320x240] [--repeat 2] [--modes resume restart]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.conftest import pixels  # noqa: E402

CHESS = Path("/usr/share/doc/povray/examples/advanced/chess2.pov")


def _until(predicate, timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(poll)


def scene(folder: Path, width: int, height: int) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(CHESS, folder / "chess2.pov")
    (folder / "pov.ini").write_text(f"Input_File_Name=chess2.pov\nWidth={width}\nHeight={height}\nAntialias=on\n"
                                    "Antialias_Threshold=0.3\n")
    return folder


class Trial:
    """One job on a private prefix and queue: its settings, client and the nodes it started."""

    def __init__(self, base: Settings, work: Path, **settings: object) -> None:
        self.tag = "httpovbench-" + secrets.token_hex(4)
        self.work = work / self.tag
        self.work.mkdir(parents=True)
        self.settings = base.with_(prefix=self.tag, queue=self.tag, storage=str(self.work / "storage"),
                                   cache_dir=self.work / "cache", **settings)
        self.client = Client(self.settings, make_app(self.settings))
        self.nodes: list = []

    def node(self, name: str):
        proc = start_worker(self.settings.with_(cache_dir=self.work / f"cache-{name}"), 1, name,
                            self.work / f"{name}.log")
        self.nodes.append(proc)
        _until(lambda: any(n.startswith(name + "@") for n in self.client.store.live_nodes(10)), 300)
        return proc

    def close(self) -> None:
        for proc in self.nodes:
            stop_worker(proc, grace=5)
        keys = list(self.client.store.r.scan_iter(match=f"{self.tag}:*", count=1000))
        if keys:
            self.client.store.r.delete(*keys)
        shutil.rmtree(self.work, ignore_errors=True)


def reference(base: Settings, work: Path, source: Path) -> tuple[float, tuple]:
    """T (povray seconds of the uninterrupted batch) and its frame's pixels."""
    trial = Trial(base, work)
    try:
        trial.node("whole")
        sub = trial.client.submit(source)
        trial.client.wait(sub.spec.id, timeout=900, poll=0.2)
        (info,) = trial.client.store.batches(sub.spec.id)["done"].values()
        (image,) = trial.client.fetch(sub.spec.id, work / "reference")
        return float(info["seconds"]), pixels(image)
    finally:
        trial.close()


def killed_at_75(base: Settings, work: Path, source: Path, full: float,
                 mode: str) -> tuple[float, float, tuple, dict]:
    """(povray's share at the kill, seconds from the kill to the job done, the frame's pixels, the checkpoint's
    record at the kill: {} for none)."""
    trial = Trial(base, work, **({"checkpoint_seconds": 0.0} if mode == "restart" else {}))
    try:
        victim = trial.node("victim")
        sub = trial.client.submit(source)
        job, (batch,) = sub.spec.id, sub.spec.batches
        _until(lambda: batch in trial.client.store.running(job), 120)
        started = trial.client.store.running(job)[batch]["started"]
        trial.node("rescuer")  # a farm's other node, idle: started before the kill, not counted
        # killed when povray says it rendered 75% of the frame (its node's lease refresh, every lease / 4), or at
        # 0.75 T should it say nothing
        share = 0.0
        while share < 0.75 and time.time() < started + 3 * full:
            share = float(trial.client.store.running(job)[batch].get("progress", 0.0))
            time.sleep(0.05)
        killed = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)
        saved = trial.client.store.checkpoint(job, batch) or {}
        trial.client.wait(job, timeout=900, poll=0.1)
        took = time.monotonic() - killed
        (image,) = trial.client.fetch(job, trial.work / "out")
        return share, took, pixels(image), saved
    finally:
        trial.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="320x240", help="the frame's size, WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each mode, alternated (default 2)")
    parser.add_argument("--modes", nargs="+", default=["resume", "restart"], choices=["resume", "restart"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    base = Settings.from_env()
    print(f"checkpoint every {base.checkpoint_seconds:g} s (share {base.checkpoint_share:g}), lease "
          f"{base.lease_seconds:g} s, chess2.pov {width}x{height} +A0.3", flush=True)
    with tempfile.TemporaryDirectory(prefix="httpov-resume-") as tmp:
        work = Path(tmp)
        source = scene(work / "scene", width, height)
        full, ref = reference(base, work, source)
        print(f"uninterrupted: T = {full:.1f} s of povray", flush=True)
        ratios: dict[str, list[float]] = {m: [] for m in args.modes}
        print(f"{'mode':>8} {'share at kill':>14} {'checkpoint at':>14} {'its bytes':>10} {'kill->done s':>13} "
              f"{'/ T':>6} {'pixels':>10}", flush=True)
        for _ in range(args.repeat):
            for mode in args.modes:
                share, took, got, saved = killed_at_75(base, work, source, full, mode)
                ratios[mode].append(took / full)
                print(f"{mode:>8} {share:>14.2f} {saved.get('fraction', 0):>14.2f} {saved.get('bytes', 0):>10} "
                      f"{took:>13.1f} {took / full:>6.2f} {'identical' if got == ref else 'DIFFERENT':>10}", flush=True)
        for mode, values in ratios.items():
            print(f"{mode}: kill->done / T median {statistics.median(values):.2f} "
                  f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)", flush=True)


if __name__ == "__main__":
    main()
