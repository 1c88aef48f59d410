"""Benchmark (not a test): how long `httpov status` (the table of the newest 20 jobs) takes.

A private redis-server holds 20 jobs of 60 one-frame batches each (submitted, no render node: all queued). The real
command, `python -m httpov.cli status`, runs N times as a user types it; the median and the spread of its wall time
are reported, on a quiet farm and while a client keeps submitting 600-frame jobs (one after another) to the same
Redis. Its output is checked to list the jobs.

    python scripts/bench_status.py [--runs 15] [--repo /work/main] [--compare /work/main]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--runs", type=int, default=15)
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose httpov is measured")
parser.add_argument("--compare", type=Path, help="another checkout (e.g. main's) whose `httpov status` runs in turn "
                    "with this one's on the same Redis, so that both meet the same load")
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)  # `python -m httpov.cli` imports httpov from the working directory
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, worker_env  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.conftest import TINY_ANIMATION, write_scene  # noqa: E402

CHECKOUTS = [ROOT, *([ARGS.compare.resolve()] if ARGS.compare else [])]


def timed(settings: Settings, runs: int) -> dict[Path, list[float]]:
    times: dict[Path, list[float]] = {root: [] for root in CHECKOUTS}
    for _ in range(runs):
        for root in CHECKOUTS:
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "httpov.cli", "status"], env=worker_env(settings), cwd=root,
                                 capture_output=True, text=True, check=True).stdout
            times[root].append(time.monotonic() - started)
            assert out.count("queued") >= 20, out
    return times


def say(label: str, times: dict[Path, list[float]]) -> None:
    for root, seen in times.items():
        print(f"{label} ({root}): median {statistics.median(seen):.3f} s (min {min(seen):.3f}, max {max(seen):.3f}, "
              f"{len(seen)} runs)", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="httpov-bench-status-") as tmp, embedded_redis(Path(tmp)) as url:
        settings = Settings(broker_url=url, state_url=url, storage=str(Path(tmp) / "storage"), prefix="bench",
                            queue="bench")
        client = Client(settings, make_app(settings))
        scene = write_scene(Path(tmp) / "scene", TINY_ANIMATION, "Width=32\nHeight=24\nInitial_Frame=1\n"
                            "Final_Frame=60\n")
        for n in range(20):
            client.submit(scene, count=1, name=f"job{n}")
        say("quiet farm", timed(settings, ARGS.runs))
        big = write_scene(Path(tmp) / "big", TINY_ANIMATION, "Width=32\nHeight=24\nInitial_Frame=1\n"
                          "Final_Frame=600\n")
        stop, submitted = threading.Event(), []

        def submit() -> None:
            submitter = Client(settings, make_app(settings))
            while not stop.is_set():
                submitted.append(submitter.submit(big, count=1, name="busy").spec.id)
        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            say("while 2 clients submit 600-batch jobs", timed(settings, ARGS.runs))
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        print(f"({len(submitted)} jobs submitted meanwhile)")


if __name__ == "__main__":
    main()
