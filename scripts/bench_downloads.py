"""Benchmark (not a test): the jobs page's response time while 16 downloads (videos and zips of frames) are asked for
at once, on a real `httpov web --public-read` process over a private redis-server and local storage (measured on
waitress; cheroot serves it since #25 item 5).

Four finished jobs of 600 frames of 96x72 each are stored as render nodes store them (nothing is rendered); 16
threads ask for the video (real ffmpeg, from imageio-ffmpeg) and the zip of frames of those jobs, each asking again
after Retry-After while its download is being built, while an anonymous reader loads the jobs page every 0.1 s.
Prints the page's times (median, 95th percentile, max), how long the downloads took, and how many builds the server
logged. Run it from the checkout so this httpov is the one imported (PYTHONPATH=<another checkout> measures that):

    PYTHONPATH=. python scripts/bench_downloads.py
"""
from __future__ import annotations

import http.client
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

JOBS, FRAMES, PER_BATCH, WIDTH, HEIGHT, REQUESTS = 4, 600, 50, 96, 72, 16


def _frame(n: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), ((n * 7) % 256, (n * 13) % 256, 128)).save(out, "PNG")
    return out.getvalue()


def _finished_job(client, scene: Path) -> str:
    """A job of FRAMES frames, every batch stored and recorded done as a render node does it."""
    from tests.stored import store_batch

    job = client.submit(scene, count=PER_BATCH).spec.id
    client.store.transition(job, "running")
    for batch in client.store.spec(job).batches:
        first, last = (int(part[1:]) for part in batch.split("-")[:2])
        store_batch(client, job, batch, {f"bench_{n:03d}.png": _frame(n) for n in range(first, last + 1)},
                    secrets.token_hex(4), node="bench@node")
    assert client.store.state(job) == "done", client.store.state(job)
    return job


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def main() -> None:
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis, free_port, stop_worker, worker_env
    from httpov.settings import Settings

    with tempfile.TemporaryDirectory(prefix="httpov-bench-downloads-") as name, \
            embedded_redis(Path(name)) as url:
        tmp = Path(name)
        settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), cache_dir=tmp / "cache")
        client = Client(settings, make_app(settings))
        scene = tmp / "scene"
        scene.mkdir()
        (scene / "scene.pov").write_text("#version 3.7;\nbackground { color rgb <0, 1, 0> }\n")
        (scene / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth={WIDTH}\nHeight={HEIGHT}\n"
                                       f"Initial_Frame=1\nFinal_Frame={FRAMES}\n")
        jobs = [_finished_job(client, scene) for _ in range(JOBS)]
        token = secrets.token_urlsafe(24)
        port = free_port()
        log = tmp / "web.log"
        env = {**worker_env(settings), "HTTPOV_WEB_TOKENS": token, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        web = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port), "--public-read",
                                "--accounts", str(tmp / "accounts")], env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        try:
            from tests.webapp import wait_answering

            wait_answering(lambda: _get(port, "/", {"Accept": "text/html"})[0], log)
            bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            asks = [(jobs[n % JOBS], ("video.mp4", "frames.zip")[(n // JOBS) % 2]) for n in range(REQUESTS)]
            answers: dict[int, int] = {}
            counting = threading.Lock()
            done = threading.Event()

            def download(ask: tuple[str, str]) -> tuple[float, int]:
                started = time.monotonic()
                while True:
                    status, headers, body = _get(port, f"/jobs/{ask[0]}/download/{ask[1]}", bearer)
                    with counting:
                        answers[status] = answers.get(status, 0) + 1
                    if status == 200:
                        return time.monotonic() - started, len(body)
                    if status not in (202, 503):
                        raise SystemExit(f"download {ask}: {status} {body[:300]!r}")
                    time.sleep(min(1.0, float(headers.get("Retry-After", 1))))

            page_times: list[float] = []

            def pages() -> None:
                while not done.is_set():
                    started = time.monotonic()
                    status, _, _ = _get(port, "/", {"Accept": "text/html"})
                    assert status == 200, status
                    page_times.append(time.monotonic() - started)
                    time.sleep(0.1)

            quiet = []
            for _ in range(30):  # the page with no download asked for: what this machine's load alone costs
                begun = time.monotonic()
                assert _get(port, "/", {"Accept": "text/html"})[0] == 200
                quiet.append(time.monotonic() - begun)
                time.sleep(0.1)
            quiet.sort()
            print(f"jobs page alone ({len(quiet)} loads): median {statistics.median(quiet):.3f} s, "
                  f"p95 {quiet[int(0.95 * (len(quiet) - 1))]:.3f} s, max {quiet[-1]:.3f} s")
            reader = threading.Thread(target=pages)
            started = time.monotonic()
            reader.start()
            with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
                results = list(pool.map(download, asks))
            done.set()
            reader.join()
            total = time.monotonic() - started
            builds = sum(" built " in line for line in log.read_text(errors="replace").splitlines())
            page_times.sort()
            print(f"{REQUESTS} downloads ({JOBS} jobs x video.mp4 and frames.zip, {FRAMES} frames of {WIDTH}x{HEIGHT} "
                  f"each): all served in {total:.1f} s (slowest {max(t for t, _ in results):.1f} s); "
                  f"answers {dict(sorted(answers.items()))}; builds logged: {builds}")
            print(f"jobs page meanwhile ({len(page_times)} loads): median {statistics.median(page_times):.3f} s, "
                  f"p95 {page_times[int(0.95 * (len(page_times) - 1))]:.3f} s, max {page_times[-1]:.3f} s")
            again = time.monotonic()
            for ask in asks[:2]:
                _get(port, f"/jobs/{ask[0]}/download/{ask[1]}", bearer)
            print(f"the same two downloads again: {time.monotonic() - again:.3f} s")
        finally:
            stop_worker(web, grace=10.0)


if __name__ == "__main__":
    main()
