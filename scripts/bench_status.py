"""Benchmark (not a test): how long `httpov status` takes, as a user types it, on a quiet farm and on a slow link.

A private redis-server holds `--jobs` queued jobs (the example scene, 30 frames each). `python -m httpov.cli status`
runs `--trials` times straight at Redis, then through a TCP proxy that delays every chunk by `--delay` ms each way
(a render farm's Redis in another building), then straight again while another process submits 20 jobs. Reports
the median and the worst wall time of each, and the Redis commands one status sends (INFO commandstats).
`--repo` measures another checkout (e.g. main's) with the same procedure.

    python scripts/bench_status.py [--jobs 20] [--trials 7] [--delay 50] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--jobs", type=int, default=20)
parser.add_argument("--trials", type=int, default=7)
parser.add_argument("--delay", type=float, default=50.0, help="ms added each way by the proxy")
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from httpov.local_farm import embedded_redis  # noqa: E402
from tests.latency import delaying_proxy  # noqa: E402

SCENE = ROOT / "examples" / "spinner"


def env_for(url: str, storage: Path) -> dict[str, str]:
    # as a user's installed httpov runs: from its byte-compiled modules (with PYTHONDONTWRITEBYTECODE set, as in some
    # shells and CI, every run would compile httpov's modules again, about 0.1 s of the figure)
    own = {k: v for k, v in os.environ.items() if not k.startswith("HTTPOV_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**own, "HTTPOV_BROKER_URL": url, "HTTPOV_STORAGE": str(storage), "HTTPOV_PREFIX": "bench",
            "HTTPOV_QUEUE": "bench"}


def timed_status(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "httpov.cli", "status"], env=env, check=True, capture_output=True)
    return time.monotonic() - started


def commands(url: str) -> int:
    return sum(int(v["calls"]) for k, v in redis.Redis.from_url(url).info("commandstats").items())


def report(label: str, times: list[float]) -> None:
    print(f"{label:<44} median {statistics.median(times):6.3f} s   worst {max(times):6.3f} s   ({len(times)} runs)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, embedded_redis(Path(tmp)) as url:
        storage = Path(tmp) / "storage"
        env = env_for(url, storage)
        for n in range(ARGS.jobs):
            subprocess.run([sys.executable, "-m", "httpov.cli", "submit", str(SCENE), "--frames", "30",
                            "--name", f"job{n}"], env=env, check=True, capture_output=True)
        timed_status(env)  # byte-compile and warm the page cache
        before = commands(url)
        timed_status(env)
        sent = commands(url) - before - 1  # INFO itself
        report(f"status of {ARGS.jobs} jobs", [timed_status(env) for _ in range(ARGS.trials)])
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        slow = env_for(f"redis://127.0.0.1:{delaying_proxy(port, ARGS.delay / 1000)}/0", storage)
        report(f"  through a {ARGS.delay:g} ms each way link", [timed_status(slow) for _ in range(ARGS.trials)])
        submitter = subprocess.Popen(
            [sys.executable, "-c", "import subprocess, sys\n"
             f"for n in range(20): subprocess.run([sys.executable, '-m', 'httpov.cli', 'submit', {str(SCENE)!r}, "
             "'--frames', '30'], check=True, capture_output=True)"], env=env)
        busy = []
        while submitter.poll() is None and len(busy) < ARGS.trials:
            busy.append(timed_status(env))
        submitter.wait()
        report("  while 20 jobs are being submitted", busy)
        print(f"Redis commands one status sends: {sent}")


if __name__ == "__main__":
    main()
