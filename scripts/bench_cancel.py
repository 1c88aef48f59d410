"""Benchmark (not a test): how long `httpov cancel` takes, and how soon after it the job's povrays are gone.

For each trial: a slow job on a real render node (2 processes, default lease), both batches rendering, a pause of
0-1 s (so the cancel lands anywhere between two of the node's checks), then `python -m httpov.cli cancel JOB` as a
user would type it. Times: the command's wall time and CPU time (user + system: on a loaded machine wall time is a
multiple of it), and its start -> the last povray of the job gone.
Runs on a private redis-server; `--repo` measures another checkout (e.g. main's) with the same procedure.

    python scripts/bench_cancel.py [--trials 8] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--trials", type=int, default=8)
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose httpov (CLI and render node) is measured")
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)  # `python -m celery -A httpov` and `python -m httpov.cli` import httpov from the working directory
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, start_worker, stop_worker, worker_env  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.integration.faults import povray_pids, slow_scene  # noqa: E402


def _until(predicate, timeout: float, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(step)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def trial(client: Client, work: Path, n: int) -> tuple[float, float, float]:
    marker = str(client.settings.cache_dir)
    sub = client.submit(slow_scene(work / f"scene{n}", 40), count=20, name=f"cancel{n}")  # two ~25 s batches
    _until(lambda: len(client.store.running(sub.spec.id)) == 2 and len(povray_pids(marker)) >= 2, 60)
    time.sleep(random.uniform(0.0, 1.0))
    started, cpu = time.monotonic(), _children_cpu()
    subprocess.run([sys.executable, "-m", "httpov.cli", "cancel", sub.spec.id], env=worker_env(client.settings),
                   check=True, capture_output=True)
    returned, cpu = time.monotonic() - started, _children_cpu() - cpu
    _until(lambda: not povray_pids(marker), 60)
    return returned, time.monotonic() - started, cpu


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="httpov-bench-cancel-") as tmp, embedded_redis(Path(tmp)) as url:
        work = Path(tmp)
        settings = Settings.from_env({"HOME": str(work)}).with_(
            broker_url=url, state_url=url, storage=str(work / "storage"), cache_dir=work / "cache",
            queue="bench-cancel")
        client = Client(settings, make_app(settings))
        worker = start_worker(settings, 2, "bench", work / "worker.log")
        try:
            results = [trial(client, work, n) for n in range(ARGS.trials)]
        finally:
            stop_worker(worker)
    print(f"httpov from {ROOT}, {ARGS.trials} trials, lease {settings.lease_seconds:g} s, "
          f"load {os.getloadavg()[0]:.1f}")
    for label, values in (("cancel command returns", [r for r, _, _ in results]),
                          ("cancel command CPU time", [c for _, _, c in results]),
                          ("povray gone after command start", [g for _, g, _ in results]),
                          ("povray gone after command return", [g - r for r, g, _ in results])):
        print(f"  {label:<34} min {min(values):5.2f} s  median {statistics.median(values):5.2f} s  "
              f"max {max(values):5.2f} s")


if __name__ == "__main__":
    main()
