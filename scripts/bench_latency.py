"""Benchmark (not a test): a 30-frame tiny job on render nodes behind a slow link to Redis.

For each delay (0, 100 and 250 ms added each way by tests/integration/faults.DelayProxy between the render nodes and a
private redis-server; the submitting client talks to Redis directly): two render nodes of two processes each, the
default lease (8 s), one job of 30 frames at 32x24 submitted with the default (adaptive) batch size. Reported per
delay: the job's wall time from submit to done, its ratio to the time without delay, the batches requeued (the job's
`requeued` counters, and batches re-sent as "never sent" by any sweeper: each one false, since no node dies),
deliveries found duplicate or busy in the nodes' logs (a batch delivered twice), and Redis commands per batch (INFO
commandstats, whole run, sweeps included).

    python scripts/bench_latency.py [--delays 0,100,250] [--runs 1] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--delays", default="0,100,250", help="milliseconds added each way, comma-separated")
parser.add_argument("--runs", type=int, default=1, help="jobs per delay (the median is reported)")
parser.add_argument("--frames", type=int, default=30)
parser.add_argument("--timeout", type=float, default=900.0)
parser.add_argument("--gossip", action="store_true",
                    help="start the render nodes with Celery's gossip and mingle (as a bare `celery worker` does)")
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose httpov (CLI and render node) is measured")
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)  # `python -m celery -A httpov` imports httpov from the working directory
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.integration.faults: this checkout's proxy

import redis  # noqa: E402

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import free_port, start_worker, stop_worker, worker_env  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.conftest import TINY_ANIMATION, write_scene  # noqa: E402
from tests.integration.faults import DelayProxy, redis_server  # noqa: E402


class Said(logging.Handler):
    """Counts the sweeps' warnings in this process (the waiting client sweeps too)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


SAID = Said()
logging.getLogger("httpov").addHandler(SAID)
logging.getLogger("httpov").propagate = False


def start(settings: Settings, name: str, log: Path) -> subprocess.Popen:
    """A render node of 2 processes as httpov.local_farm starts one (without gossip and mingle), or with them."""
    if not ARGS.gossip:
        return start_worker(settings, 2, name, log)
    argv = [sys.executable, "-m", "celery", "-A", "httpov", "worker", "--concurrency", "2", "--loglevel", "INFO",
            "-Q", settings.queue, "-n", f"{name}@%h"]
    return subprocess.Popen(argv, env=worker_env(settings), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def commands(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def run(work: Path, port: int, delay_ms: int, n: int) -> dict[str, float]:
    direct = f"redis://127.0.0.1:{port}/0"
    tag = f"lat{delay_ms}-{n}"
    with DelayProxy(port, delay_ms / 1000) as proxy:
        base = Settings(broker_url=direct, state_url=direct, storage=str(work / "storage"), prefix=tag, queue=tag,
                        cache_dir=work / f"cache-{tag}", task_time_limit=600)
        nodes = base.with_(broker_url=proxy.url, state_url=proxy.url)
        client = Client(base, make_app(base))
        logs = [work / f"{tag}-node{i}.log" for i in range(2)]
        procs = [start(nodes, f"{tag}n{i}", log) for i, log in enumerate(logs)]
        try:
            # both nodes said they are alive (the job's window is sized for them) and wait for batches in BRPOP:
            # start-up is not timed
            deadline = time.monotonic() + 120
            while len(client.store.live_nodes(within=60)) < 2 or sum(
                    c["cmd"] == "brpop" for c in redis.Redis.from_url(direct).client_list()) < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError("render nodes did not start")
                time.sleep(0.2)
            scene = write_scene(work / f"scene-{tag}", TINY_ANIMATION,
                                f"Width=32\nHeight=24\nInitial_Frame=1\nFinal_Frame={ARGS.frames}\n")
            before, SAID.lines = commands(direct), []
            started = time.monotonic()
            sub = client.submit(scene)
            final = client.wait(sub.spec.id, poll=0.05, timeout=ARGS.timeout)
            seconds = time.monotonic() - started
            used = commands(direct) - before
            assert final.state == "done" and final.frames_done == ARGS.frames, (final.state, final.frames_done)
            batches = client.store.batches(sub.spec.id)
            requeued = sum(batches["requeued"].values())
        finally:
            for proc in procs:
                stop_worker(proc, grace=5.0)
        text = "".join(log.read_text(errors="replace") for log in logs) + "\n".join(SAID.lines)
        twice = len(re.findall(r"httpov: batch (duplicate|busy):", text))
        return {"seconds": seconds, "requeued": requeued, "twice": twice, "batches": len(sub.spec.batches),
                "per_batch": used / len(sub.spec.batches),
                "unsent": text.count("never sent"), "stranded": text.count("died before starting"),
                "false": requeued + text.count("never sent")}


def main() -> None:
    delays = [int(d) for d in ARGS.delays.split(",")]
    with tempfile.TemporaryDirectory(prefix="httpov-bench-latency-") as tmp:
        work, port = Path(tmp), free_port()
        (work / "redis").mkdir()
        server = redis_server(work / "redis", port, persist=False)
        try:
            base: float | None = None
            for delay in delays:
                runs = [run(work, port, delay, n) for n in range(ARGS.runs)]
                seconds = statistics.median(r["seconds"] for r in runs)
                base = seconds if base is None else base
                print(f"{delay:4d} ms each way: {seconds:7.1f} s ({seconds / base:4.1f}x), "
                      f"{runs[0]['batches']} batches, false requeues {[r['false'] for r in runs]} "
                      f"(never sent {[r['unsent'] for r in runs]}, stranded {[r['stranded'] for r in runs]}, "
                      f"requeued counters {[r['requeued'] for r in runs]}), "
                      f"delivered twice {[r['twice'] for r in runs]}, "
                      f"Redis commands per batch {statistics.median(r['per_batch'] for r in runs):.0f}", flush=True)
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
