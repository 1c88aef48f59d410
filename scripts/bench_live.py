"""Benchmark (not a test): what one open live page costs Redis, polling (GET /api/jobs/ID or /api/jobs?limit=50 every
3 s, as static/live.js polls) against its event stream (GET /api/stream/jobs/ID, /api/stream/jobs?limit=50), on a
real `httpov web` process over a private redis-server (#26 item 9).

The farm holds a live job of 3000 frames in 300 batches (100 of them done) and 49 finished one-frame jobs; while a
page is open, one more batch of the live job is recorded done every `--every` s (as a render node would). For each
way and page, over `--seconds`: the commands Redis processed, the bytes it sent and its CPU time, less those of the
same run with no page open (the recording's own writes), per minute. The requests carry a farm-wide token, which
costs Redis nothing: a signed-in browser's polling also reads its session on every request.

    python scripts/bench_live.py [--seconds 30] [--every 3]
"""
from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seconds", type=float, default=30.0, help="how long each page is open")
parser.add_argument("--every", type=float, default=3.0, help="seconds between two batches recorded done")
ARGS = parser.parse_args()
ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))


def _scene(folder: Path, frames: int) -> Path:
    folder.mkdir()
    (folder / "scene.pov").write_text("#version 3.7;\nbackground { color rgb <0, 1, 0> }\n")
    (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth=8\nHeight=8\nInitial_Frame=1\n"
                                    f"Final_Frame={frames}\n")
    return folder


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _redis_counts(r) -> tuple[int, int, float]:
    stats, cpu = r.info("stats"), r.info("cpu")
    return (int(stats["total_commands_processed"]), int(stats["total_net_output_bytes"]),
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


def main() -> None:
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis, free_port, stop_worker, worker_env
    from httpov.settings import Settings
    from tests.stored import store_batch
    from tests.webapp import wait_answering

    with tempfile.TemporaryDirectory(prefix="httpov-bench-live-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), cache_dir=tmp / "cache")
        client = Client(settings, make_app(settings))
        small = _scene(tmp / "small", 1)
        for _ in range(49):
            job = client.submit(small, count=1).spec.id
            client.store.transition(job, "running")
            store_batch(client, job, client.store.spec(job).batches[0], None, "r")
        live = client.submit(_scene(tmp / "live", 3000), count=10).spec.id
        client.store.transition(live, "running")
        batches = iter(client.store.spec(live).batches)
        for _ in range(100):
            store_batch(client, live, next(batches), None, "r")
        token = secrets.token_urlsafe(24)
        port = free_port()
        log = tmp / "web.log"
        env = {**worker_env(settings), "HTTPOV_WEB_TOKENS": token, "PYTHONPATH": str(ROOT)}
        web = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port),
                                "--accounts", str(tmp / "accounts")], env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        r = client.store.r
        try:
            wait_answering(lambda: _get(port, "/api/jobs?limit=1", headers)[0], log)

            def run(page: Callable | None) -> tuple[float, float, float, int]:
                """Commands, bytes and Redis's CPU ms per minute while `page` runs for --seconds with a batch done
                every `--every` s; and how many updates the page had."""
                stop = threading.Event()
                seen = [0]
                worker = threading.Thread(target=page, args=(stop, seen), daemon=True) if page else None
                commands, sent, cpu = _redis_counts(r)
                started = time.monotonic()
                if worker:
                    worker.start()
                try:
                    while time.monotonic() - started < ARGS.seconds:
                        time.sleep(ARGS.every)
                        store_batch(client, live, next(batches), None, "r")
                finally:
                    stop.set()
                if worker:
                    worker.join()
                elapsed = time.monotonic() - started
                after_commands, after_sent, after_cpu = _redis_counts(r)
                return ((after_commands - commands) * 60 / elapsed, (after_sent - sent) * 60 / elapsed,
                        (after_cpu - cpu) * 60_000 / elapsed, seen[0])

            def poll(path: str) -> Callable:
                def page(stop: threading.Event, seen: list[int]) -> None:
                    while not stop.wait(3.0):
                        status, _ = _get(port, path, headers)
                        assert status == 200, status
                        seen[0] += 1
                return page

            def stream(path: str) -> Callable:
                def page(stop: threading.Event, seen: list[int]) -> None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", path, headers={**headers, "Accept": "text/event-stream"})
                    response = conn.getresponse()
                    assert response.status == 200, response.read()
                    sock = conn.sock
                    threading.Thread(target=lambda: (stop.wait(), sock.shutdown(socket.SHUT_RDWR)), daemon=True).start()
                    try:
                        while line := response.readline():
                            seen[0] += line.startswith(b"data: {") or line.startswith(b"data: [")
                    except (OSError, http.client.HTTPException):
                        pass
                    conn.close()
                return page

            base_commands, base_bytes, base_cpu, _ = run(None)
            print(f"a batch done every {ARGS.every:g} s; with no page open (the recording's own writes): "
                  f"{base_commands:.0f} commands/min, {base_bytes / 1024:.1f} KiB/min, Redis CPU {base_cpu:.0f} ms/min")
            for label, path in (("job page", f"jobs/{live}"), ("jobs page", "jobs?limit=50")):
                for way, page in (("polling", poll(f"/api/{path}")), ("events", stream(f"/api/stream/{path}"))):
                    commands, sent, cpu, seen = run(page)
                    print(f"{label:<9} {way:<8}: {commands - base_commands:7.0f} commands/min "
                          f"{(sent - base_bytes) / 1024:8.1f} KiB/min from Redis, Redis CPU {cpu - base_cpu:5.0f} "
                          f"ms/min   ({seen} updates in {ARGS.seconds:g} s)")
        finally:
            stop_worker(web, grace=10.0)


if __name__ == "__main__":
    main()
