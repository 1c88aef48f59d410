"""Benchmark: how long a render node's batches take to start again elsewhere after it is SIGKILLed.

For each lease setting: a victim node takes both batches of a slow job, an idle rescuer node starts, the victim's
process group is SIGKILLed mid-render, and we time kill -> every lost batch running on the rescuer, and
kill -> job done. Uses the Redis on HTTPOV_BROKER_URL (default 127.0.0.1:6379) under a private key prefix.

    python scripts/recovery.py [--leases 8] [--repeat 2]      (default: HTTPOV_LEASE_SECONDS's default)
"""
from __future__ import annotations

import argparse
import os
import secrets
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
from tests.integration.faults import slow_scene  # noqa: E402


def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.02)


def trial(base: Settings, lease: float, work: Path) -> tuple[float, float]:
    tag = "httpovbench-" + secrets.token_hex(4)
    settings = base.with_(prefix=tag, queue=tag, lease_seconds=lease, storage=str(work / tag / "storage"),
                          cache_dir=work / tag / "cache")
    client = Client(settings, make_app(settings))
    victim = rescuer = None
    try:
        sub = client.submit(slow_scene(work / tag / "scene", 8), count=4)  # two batches of ~5 s
        victim = start_worker(settings, 2, "victim", work / tag / "victim.log")
        _until(lambda: len(client.store.running(sub.spec.id)) == 2, 60)
        rescuer = start_worker(settings, 2, "rescuer", work / tag / "rescuer.log")
        _until(lambda: any(n.startswith("rescuer@") for n in client.store.live_nodes(10)), 60)
        lost = set(client.store.running(sub.spec.id))
        time.sleep(min(1.0, lease / 2))  # somewhere mid-render, between two lease refreshes
        killed = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)
        _until(lambda: lost <= {b for b, i in client.store.running(sub.spec.id).items()
                                if i["node"].startswith("rescuer@")} | set(client.store.batches(sub.spec.id)["done"]),
               120)
        back = time.monotonic() - killed
        client.wait(sub.spec.id, timeout=180, poll=0.05)
        return back, time.monotonic() - killed
    finally:
        for proc in (victim, rescuer):
            if proc is not None:
                stop_worker(proc, grace=5)
        keys = list(client.store.r.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.store.r.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=float, nargs="+", default=[Settings().lease_seconds])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    base = Settings.from_env()
    print(f"{'lease s':>8} {'sweep s':>8} {'back (each)':>22} {'back mean':>10} {'done mean':>10}")
    with tempfile.TemporaryDirectory(prefix="httpov-recovery-") as tmp:
        for lease in args.leases:
            results = [trial(base, lease, Path(tmp)) for _ in range(args.repeat)]
            backs = [r[0] for r in results]
            sweep = base.with_(lease_seconds=lease).sweep_seconds
            print(f"{lease:>8.1f} {sweep:>8.2f} {' '.join(f'{b:.2f}' for b in backs):>22} "
                  f"{statistics.mean(backs):>10.2f} {statistics.mean(r[1] for r in results):>10.2f}", flush=True)


if __name__ == "__main__":
    main()
